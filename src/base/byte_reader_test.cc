#include "base/byte_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace distri::base {
namespace {

TEST(ByteReaderTest, ReadsLittleEndianFieldsInOrder) {
  std::string in;
  in.push_back(7);
  in.append("\x02\x01", 2);
  AppendLe32(&in, 0xdeadbeef);
  AppendLe64(&in, 1ull << 40);
  AppendLe32(&in, 3);
  in.append("abc");
  ByteReader r(in);
  uint8_t a = 0;
  uint16_t b = 0;
  uint32_t c = 0;
  uint64_t d = 0;
  std::string_view s;
  ASSERT_TRUE(r.U8(&a) && r.U16(&b) && r.U32(&c) && r.U64(&d) && r.Str32(&s));
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, 0x0102);
  EXPECT_EQ(c, 0xdeadbeefu);
  EXPECT_EQ(d, 1ull << 40);
  EXPECT_EQ(s, "abc");
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.U8(&a));
}

TEST(ByteReaderTest, AnAbsurdLengthIsRefusedAndTakesNothing) {
  std::string in;
  AppendLe32(&in, 0xffffffff);  // 4 GiB said, 2 bytes there
  in.append("xy");
  ByteReader r(in);
  std::string_view s;
  EXPECT_FALSE(r.Str32(&s));
  EXPECT_EQ(r.rest().size(), in.size());  // the length was not consumed
  uint32_t n = 0;
  EXPECT_FALSE(r.Count(&n, 1, 1000));  // more items than bytes
  EXPECT_EQ(r.rest().size(), in.size());
  std::string in64;
  AppendLe64(&in64, ~0ull);
  ByteReader r64(in64);
  EXPECT_FALSE(r64.Str64(&s));
}

TEST(ByteReaderTest, CountIsBoundedByItsMaximumAndWhatIsLeft) {
  std::string in;
  AppendLe32(&in, 3);
  in.append(6, 'z');
  uint32_t n = 0;
  EXPECT_FALSE(ByteReader(in).Count(&n, 2, 2));  // over the maximum
  EXPECT_FALSE(ByteReader(in).Count(&n, 4, 10));  // 3 items of 4 bytes do not fit in 6
  ByteReader r(in);
  ASSERT_TRUE(r.Count(&n, 2, 10));
  EXPECT_EQ(n, 3u);
}

TEST(ByteReaderTest, DoubleRoundTripsThroughItsBits) {
  std::string in;
  AppendLe64(&in, 0x400921fb54442d18ull);  // pi
  double v = 0;
  ASSERT_TRUE(ByteReader(in).F64(&v));
  EXPECT_DOUBLE_EQ(v, 3.141592653589793);
}

}  // namespace
}  // namespace distri::base
