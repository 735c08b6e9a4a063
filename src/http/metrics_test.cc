#include "http/metrics.h"

#include <gtest/gtest.h>

namespace distri::http {
namespace {

TEST(Metrics, RendersFamiliesAndEscapesLabels) {
  std::string out;
  MetricsWriter w(&out);
  w.Counter("x_total", "Things", 3);
  w.Family("y", "gauge", "Why");
  w.Sample("y", 1.5, {{"route", "a\"b\\c\nd"}});
  EXPECT_EQ(out,
            "# HELP x_total Things\n# TYPE x_total counter\nx_total 3\n"
            "# HELP y Why\n# TYPE y gauge\ny{route=\"a\\\"b\\\\c\\nd\"} 1.5\n");
}

TEST(Metrics, IntegersUpTo2To53PrintInFull) {
  std::string out;
  MetricsWriter w(&out);
  w.Sample("id", 2917904229674485.0);       // a node id (ids are < 2^53)
  w.Sample("max", 9007199254740992.0);      // 2^53
  w.Sample("big", 1e17);                    // past it: %g
  w.Sample("frac", 0.25);
  EXPECT_EQ(out, "id 2917904229674485\nmax 9007199254740992\nbig 1e+17\nfrac 0.25\n");
}

TEST(Metrics, HistogramIsCumulative) {
  Histogram h;
  h.Observe(0.00005);
  h.Observe(0.003);
  h.Observe(100);
  std::string out;
  MetricsWriter w(&out);
  w.HistogramSamples("lat", h, {{"op", "set"}});
  EXPECT_NE(out.find("lat_bucket{op=\"set\",le=\"0.0001\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lat_bucket{op=\"set\",le=\"0.005\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lat_bucket{op=\"set\",le=\"10\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lat_bucket{op=\"set\",le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lat_count{op=\"set\"} 3\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace distri::http
