// Status::ToString, kept out of the header so the header stays light.

#include "distri/status.h"

namespace distri {

std::string Status::ToString() const {
  if (ok()) return "OK";
  const char* prefix = "Error";
  switch (code()) {
    case Code::kOk: prefix = "OK"; break;
    case Code::kInvalidArgument: prefix = "Invalid argument"; break;
    case Code::kNotFound: prefix = "Not found"; break;
    case Code::kWrongType: prefix = "Wrong type"; break;
    case Code::kOutOfMemory: prefix = "Out of memory"; break;
    case Code::kIOError: prefix = "IO error"; break;
    case Code::kCorruption: prefix = "Corruption"; break;
    case Code::kNoAuth: prefix = "No auth"; break;
    case Code::kPermissionDenied: prefix = "Permission denied"; break;
    case Code::kBusy: prefix = "Busy"; break;
    case Code::kUnknown: prefix = "Unknown"; break;
    case Code::kInternal: prefix = "Internal"; break;
  }
  return std::string(prefix) + ": " + message();
}

}  // namespace distri
