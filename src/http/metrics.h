// Prometheus text exposition (format 0.0.4) for GET /metrics.
//
// MetricsWriter appends families (# HELP, # TYPE, samples) to a string;
// Histogram is a fixed-bucket latency histogram kept by whoever measures
// (the HTTP server for its requests and writes; the server for commands
// and fsyncs when it keeps one). Rendering is on request: nothing here runs
// between scrapes.
//
// Thread-safety: none; loop thread only.

#ifndef DISTRI_HTTP_METRICS_H_
#define DISTRI_HTTP_METRICS_H_

#include <array>

#include "base/histogram.h"
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace distri::http {

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Latency histogram in seconds with buckets from 100 µs to 10 s (shared with
// the server and the log, which record their own).
using Histogram = base::LatencyHistogram;

class MetricsWriter {
 public:
  explicit MetricsWriter(std::string* out) : out_(out) {}

  // Starts a family; `type` is "counter", "gauge" or "histogram".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, double value, Labels labels = {});
  // A whole histogram family with one label set.
  void HistogramSamples(std::string_view name, const Histogram& h, Labels labels = {});

  // Convenience: a family with a single unlabelled sample.
  void Counter(std::string_view name, std::string_view help, double value);
  void Gauge(std::string_view name, std::string_view help, double value);

 private:
  void AppendLabels(Labels labels, std::string_view extra_name = {},
                    std::string_view extra_value = {});
  std::string* out_;
};

// Escapes a label value: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view v);

}  // namespace distri::http

#endif  // DISTRI_HTTP_METRICS_H_
