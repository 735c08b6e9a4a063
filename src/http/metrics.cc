// Prometheus text exposition; see metrics.h.

#include "http/metrics.h"

#include <cmath>
#include <cstdio>

namespace distri::http {

namespace {

constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

void AppendNumber(double v, std::string* out) {
  if (std::isnan(v)) {
    out->append("NaN");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
  } else if (v == std::floor(v) && std::fabs(v) <= kMaxExactInteger) {
    // Every integer a double holds exactly prints in full: node ids (< 2^53) and large
    // counters must not lose digits to %g.
    out->append(std::to_string(static_cast<int64_t>(v)));
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    out->append(buf);
  }
}

}  // namespace

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '"') {
      out.append("\\\"");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void MetricsWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void MetricsWriter::AppendLabels(Labels labels, std::string_view extra_name,
                                 std::string_view extra_value) {
  if (labels.size() == 0 && extra_name.empty()) return;
  out_->push_back('{');
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_->push_back(',');
    first = false;
    out_->append(k).append("=\"").append(EscapeLabelValue(v)).append("\"");
  }
  if (!extra_name.empty()) {
    if (!first) out_->push_back(',');
    out_->append(extra_name).append("=\"").append(extra_value).append("\"");
  }
  out_->push_back('}');
}

void MetricsWriter::Sample(std::string_view name, double value, Labels labels) {
  out_->append(name);
  AppendLabels(labels);
  out_->push_back(' ');
  AppendNumber(value, out_);
  out_->push_back('\n');
}

void MetricsWriter::HistogramSamples(std::string_view name, const Histogram& h, Labels labels) {
  std::string bucket = std::string(name) + "_bucket";
  for (size_t i = 0; i < Histogram::kBounds.size(); i++) {
    std::string le;
    AppendNumber(Histogram::kBounds[i], &le);
    out_->append(bucket);
    AppendLabels(labels, "le", le);
    out_->push_back(' ');
    AppendNumber(static_cast<double>(h.CumulativeCount(i)), out_);
    out_->push_back('\n');
  }
  out_->append(bucket);
  AppendLabels(labels, "le", "+Inf");
  out_->push_back(' ');
  AppendNumber(static_cast<double>(h.count()), out_);
  out_->push_back('\n');
  Sample(std::string(name) + "_sum", h.sum(), labels);
  Sample(std::string(name) + "_count", static_cast<double>(h.count()), labels);
}

void MetricsWriter::Counter(std::string_view name, std::string_view help, double value) {
  Family(name, "counter", help);
  Sample(name, value);
}

void MetricsWriter::Gauge(std::string_view name, std::string_view help, double value) {
  Family(name, "gauge", help);
  Sample(name, value);
}

}  // namespace distri::http
