#include "common/json_writer.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace qsr {
namespace {

TEST(JsonWriterTest, EmptyObject) { EXPECT_EQ(JsonObject().str(), "{}"); }

TEST(JsonWriterTest, KeepsInsertionOrderAndTypes) {
  JsonObject o;
  o.Add("round", 3)
      .Add("step", int64_t{1} << 40)
      .Add("lr", 0.1)
      .Add("ok", true)
      .Add("bad", false)
      .Add("name", "cnn")
      .Add("s", std::string("x"))
      .AddRaw("h", "[1,2]");
  EXPECT_EQ(o.str(),
            R"({"round":3,"step":1099511627776,"lr":0.1,"ok":true,"bad":false,"name":"cnn",)"
            R"("s":"x","h":[1,2]})");
}

TEST(JsonWriterTest, EscapesStrings) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(JsonQuote("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f", 2)), R"("\u0001\u001f")");
  EXPECT_EQ(JsonQuote(std::string(1, '\0')), R"("\u0000")");
  EXPECT_EQ(JsonQuote("h\xc3\xa9/"), "\"h\xc3\xa9/\"");  // UTF-8 and '/' pass through
  EXPECT_EQ(JsonObject().Add("k\"", "v\n").str(), R"({"k\"":"v\n"})");
}

TEST(JsonWriterTest, DoublesRoundTripInShortForm) {
  auto render = [](double v) { return JsonObject().Add("v", v).str(); };
  EXPECT_EQ(render(0.1), R"({"v":0.1})");
  EXPECT_EQ(render(2.0), R"({"v":2})");
  EXPECT_EQ(render(-1.5e-7), R"({"v":-1.5e-07})");
  EXPECT_EQ(render(0.1 + 0.2), R"({"v":0.30000000000000004})");
  const double third = 1.0 / 3.0;
  const std::string s = render(third);
  EXPECT_EQ(std::strtod(s.substr(5).c_str(), nullptr), third);
}

TEST(JsonWriterTest, NonFiniteIsNull) {
  JsonObject o;
  o.Add("nan", std::numeric_limits<double>::quiet_NaN())
      .Add("inf", std::numeric_limits<double>::infinity())
      .Add("ninf", -std::numeric_limits<double>::infinity());
  EXPECT_EQ(o.str(), R"({"nan":null,"inf":null,"ninf":null})");
}

}  // namespace
}  // namespace qsr
