// libFuzzer target for the state machine's two decoders: log entries and
// snapshots. Arbitrary bytes must either be rejected with a Status or, for
// entries that decode, apply without crashing — against a state that already
// holds some keys, so the apply paths that read existing values are reached.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "state/entry.h"
#include "state/state_machine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace distri::state;

  StateMachine sm;
  std::string buf;
  std::string_view seed[] = {"k", "10"};
  EncodeEntry(&buf, Op::kSet, 0, 1000, 5000, "default", seed);
  (void)sm.Apply(1, buf);

  EntryView e;
  if (DecodeEntry(input, &e).ok()) (void)sm.Apply(2, e);

  StateMachine loaded;
  if (loaded.LoadSnapshot(7, input).ok()) {
    std::string out;
    distri::Status st = loaded.SaveSnapshot([&](std::string_view b) {
      out.append(b);
      return distri::Status::Ok();
    });
    if (!st.ok() || out.size() != input.size()) __builtin_trap();  // round trip keeps every byte
  }
  return 0;
}
