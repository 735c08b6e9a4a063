// Keyspace: hash table correctness under growth, shrinking and deletion, and
// the SCAN guarantee across resizes.

#include "state/keyspace.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <unordered_map>

namespace distri::state {
namespace {

TEST(KeyspaceTest, PutFindEraseAgainstReference) {
  Keyspace ks;
  std::unordered_map<std::string, std::string> ref;
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; i++) {
    std::string key = "k" + std::to_string(rng() % 5000);
    if (rng() % 3 == 0) {
      EXPECT_EQ(ks.Erase(key), ref.erase(key) == 1);
    } else {
      std::string value = std::to_string(i);
      ks.Put(Item::Make(key, value, 0));
      ref[key] = value;
    }
  }
  ASSERT_EQ(ks.size(), ref.size());
  for (const auto& [k, v] : ref) {
    const Item* item = ks.Find(k);
    ASSERT_NE(item, nullptr) << k;
    EXPECT_EQ(item->value(), v);
  }
  size_t seen = 0;
  ks.ForEach([&](const Item& item) {
    seen++;
    EXPECT_EQ(ref.at(std::string(item.key())), item.value());
  });
  EXPECT_EQ(seen, ref.size());
}

TEST(KeyspaceTest, MemoryShrinksAfterErase) {
  Keyspace ks;
  for (int i = 0; i < 10000; i++) ks.Put(Item::Make("key" + std::to_string(i), "v", 0));
  size_t full = ks.memory_bytes();
  for (int i = 0; i < 10000; i++) ASSERT_TRUE(ks.Erase("key" + std::to_string(i)));
  EXPECT_EQ(ks.size(), 0u);
  EXPECT_LT(ks.memory_bytes(), full / 50);
}

TEST(KeyspaceTest, ItemFieldsAndExpiry) {
  Item* item = Item::Make("key", std::string(100, 'x'), 1234);
  EXPECT_EQ(item->key(), "key");
  EXPECT_EQ(item->value().size(), 100u);
  EXPECT_EQ(item->expire_at_ms(), 1234);
  EXPECT_TRUE(item->expired(1234));
  EXPECT_FALSE(item->expired(1233));
  item->set_expire_at_ms(0);
  EXPECT_FALSE(item->has_expiry());
  EXPECT_EQ(item->type(), ValueType::kString);
  Item::Free(item);
}

TEST(KeyspaceTest, ScanReturnsEveryKeyAcrossResizes) {
  Keyspace ks;
  for (int i = 0; i < 1000; i++) ks.Put(Item::Make("stable" + std::to_string(i), "v", 0));
  std::set<std::string> seen;
  uint64_t cursor = 0;
  int step = 0;
  do {
    cursor = ks.Scan(cursor, 10, [&](const Item& item) { seen.insert(std::string(item.key())); });
    // Grow the table mid-scan, then shrink it again.
    if (step == 5) {
      for (int i = 0; i < 5000; i++) ks.Put(Item::Make("extra" + std::to_string(i), "v", 0));
    }
    if (step == 40) {
      for (int i = 0; i < 5000; i++) ks.Erase("extra" + std::to_string(i));
    }
    step++;
  } while (cursor != 0);
  for (int i = 0; i < 1000; i++) EXPECT_TRUE(seen.count("stable" + std::to_string(i))) << i;
}

// A cursor no table could have issued ends the scan at once, with no keys,
// however the low bits would map onto this table's buckets.
TEST(KeyspaceTest, ScanCursorPastAnyTableIsTheEnd) {
  Keyspace ks;
  for (int i = 0; i < 100; i++) ks.Put(Item::Make("k" + std::to_string(i), "v", 0));
  int visited = 0;
  EXPECT_EQ(ks.Scan(UINT64_MAX, 10, [&](const Item&) { visited++; }), 0u);
  const uint64_t first_bad = uint64_t{1} << Keyspace::kMaxCursorBits;
  EXPECT_EQ(ks.Scan(first_bad, 1000, [&](const Item&) { visited++; }), 0u);
  EXPECT_EQ(visited, 0);
  // The largest cursor below the bound still visits its bucket (the last one).
  uint64_t last = (uint64_t{1} << Keyspace::kMaxCursorBits) - 1;
  EXPECT_EQ(ks.Scan(last, 1, [&](const Item&) { visited++; }), 0u);
}

TEST(KeyspaceTest, ItemAtOrAfterWrapsAround) {
  Keyspace ks;
  EXPECT_EQ(ks.ItemAtOrAfter(7), nullptr);
  ks.Put(Item::Make("only", "v", 0));
  for (uint64_t slot : {uint64_t{0}, uint64_t{5}, uint64_t{15}, UINT64_MAX}) {
    const Item* item = ks.ItemAtOrAfter(slot);
    ASSERT_NE(item, nullptr);
    EXPECT_EQ(item->key(), "only");
  }
}

TEST(KeyspaceTest, EmptyKeyAndBinaryKeys) {
  Keyspace ks;
  ks.Put(Item::Make("", "empty", 0));
  ks.Put(Item::Make(std::string_view("a\0b", 3), "bin", 0));
  EXPECT_EQ(ks.Find("")->value(), "empty");
  EXPECT_EQ(ks.Find(std::string_view("a\0b", 3))->value(), "bin");
  EXPECT_EQ(ks.Find("a"), nullptr);
}

}  // namespace
}  // namespace distri::state

namespace distri::state {
namespace {

TEST(KeyspaceTest, OverwriteInPlaceWhenTheValueFits) {
  Keyspace ks;
  ks.Put(Item::Make("counter", "100", 0));
  Item* item = ks.Find("counter");
  size_t before = ks.memory_bytes();
  ASSERT_TRUE(ks.TryOverwrite(item, "101", 5000));
  EXPECT_EQ(ks.Find("counter"), item);  // same block
  EXPECT_EQ(item->value(), "101");
  EXPECT_EQ(item->expire_at_ms(), 5000);
  EXPECT_EQ(ks.memory_bytes(), before);
  ASSERT_TRUE(ks.TryOverwrite(item, "9", 0));
  EXPECT_EQ(ks.Find("counter")->value(), "9");
  EXPECT_LT(ks.memory_bytes(), before);
  // Too big for the block: the caller must allocate.
  EXPECT_FALSE(ks.TryOverwrite(item, std::string(1000, 'x'), 0));
  // A big block is not kept for a tiny value.
  ks.Put(Item::Make("big", std::string(4096, 'b'), 0));
  EXPECT_FALSE(ks.TryOverwrite(ks.Find("big"), "tiny", 0));
}

}  // namespace
}  // namespace distri::state
