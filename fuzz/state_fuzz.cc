// libFuzzer target for the state machine's two decoders: log entries and
// snapshots. Arbitrary bytes must either be rejected with a Status or, for
// entries that decode, apply without crashing — against a state that already
// holds some keys, so the apply paths that read existing values are reached.
// After either, the state machine's running totals equal a full recount.

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

  // The running totals must match a full recount after any entry or load.
  auto check_totals = [](const StateMachine& m) {
    if (m.memory_bytes() != m.RecountMemoryBytes() || m.key_count() != m.RecountKeys()) {
      __builtin_trap();
    }
  };
  EntryView e;
  if (DecodeEntry(input, &e).ok()) (void)sm.Apply(2, e);
  check_totals(sm);

  StateMachine loaded;
  if (loaded.LoadSnapshot(7, input).ok()) {
    check_totals(loaded);
    std::string out;
    distri::Status st = loaded.SaveSnapshot([&](std::string_view b) {
      out.append(b);
      return distri::Status::Ok();
    });
    if (!st.ok() || out.size() != input.size()) __builtin_trap();  // round trip keeps every byte
  }
  return 0;
}
