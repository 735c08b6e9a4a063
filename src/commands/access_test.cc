#include "commands/access.h"

#include <gtest/gtest.h>

#include <set>

namespace distri::commands {
namespace {

TEST(AccessTest, RoomIdIsStableShortAndNotTheCode) {
  const std::string code = "Zx9_kQ2mB7wLp3VtR8nYcA";
  std::string id = RoomId(code);
  EXPECT_EQ(id, RoomId(code));
  EXPECT_EQ(id.size(), 18u);  // "r-" + 16 hex digits
  EXPECT_EQ(id.rfind("r-", 0), 0u);
  EXPECT_EQ(id.find(code.substr(0, 4)), std::string::npos);
  std::set<std::string> ids;
  for (int i = 0; i < 1000; i++) ids.insert(RoomId(code + std::to_string(i)));
  EXPECT_EQ(ids.size(), 1000u);
  // Builtin rooms are no secret: their id is their code.
  EXPECT_EQ(RoomId("default"), "default");
}

TEST(AccessTest, PublicNameNeverRepeatsTheCode) {
  EXPECT_EQ(PublicRoomName("code1", "code1", "r-ab"), "r-ab");
  EXPECT_EQ(PublicRoomName("code1", "team", "r-ab"), "team");
}

TEST(AccessTest, WhoIsAnAdmin) {
  ServerSettings s;
  Session session;
  s.open_admin = true;  // no password, loopback, trusted
  EXPECT_TRUE(IsAdmin(s, session));
  s.open_admin = false;  // no password, other address (or --trust-loopback no)
  EXPECT_FALSE(IsAdmin(s, session));
  s.requirepass = "pw";
  EXPECT_FALSE(IsAdmin(s, session));
  session.authenticated = true;
  EXPECT_TRUE(IsAdmin(s, session));
}

TEST(AccessTest, PasswordEquals) {
  EXPECT_TRUE(PasswordEquals("s3cret", "s3cret"));
  EXPECT_FALSE(PasswordEquals("s3cre", "s3cret"));
  EXPECT_FALSE(PasswordEquals("s3cret!", "s3cret"));
  EXPECT_FALSE(PasswordEquals("", "s3cret"));
  EXPECT_TRUE(PasswordEquals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(PasswordEquals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace distri::commands
