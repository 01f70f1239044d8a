// Field errors name the file, the line and the field when the document keeps its text.
#include <doctest/doctest.h>

#include <string>

#include "sparseloom/core/json.hpp"
#include "sparseloom/scenario/scenario.hpp"

using namespace sparseloom;

namespace {
std::string error_of(const std::string& text, void (*fn)(const json::Field&)) {
  const auto doc = json::parse_document(text, "s.json");
  try {
    fn(doc.root());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("line_of finds keys and array elements, skipping strings that look like keys") {
  const std::string t = "{\n \"a\": \"x\\\"tasks\\\"\",\n \"tasks\": [\n  {\"n\": 1},\n  {\n   \"n\": 2}\n ]\n}";
  CHECK(json::line_of(t, {{"a", 0, false}}) == 2);
  CHECK(json::line_of(t, {{"tasks", 0, false}}) == 3);
  CHECK(json::line_of(t, {{"tasks", 0, false}, {"", 1, true}}) == 5);
  CHECK(json::line_of(t, {{"tasks", 0, false}, {"", 1, true}, {"n", 0, false}}) == 6);
  CHECK(json::line_of(t, {{"missing", 0, false}}) == 0);
  CHECK(json::line_of(t, {{"tasks", 0, false}, {"", 7, true}}) == 0);
  CHECK(json::line_of("[1, 2", {{"", 5, true}}) == 0);  // truncated text: no line, no crash
}

TEST_CASE("a wrong value names file, line and field") {
  const std::string t = "{\n\"schema_version\": 1,\n\"v\": {\n  \"x\": 1,\n  \"y\": 500\n}\n}";
  const auto msg = error_of(t, [](const json::Field& r) { r["v"].number("y", 0, 100); });
  CHECK(msg.find("s.json:5: v.y") != std::string::npos);
  const auto wrong_type = error_of(t, [](const json::Field& r) { r["v"].get<std::string>("x"); });
  CHECK(wrong_type.find("s.json:4: v.x") != std::string::npos);
  // A missing key names the line of the object that lacks it.
  const auto missing = error_of(t, [](const json::Field& r) { r["v"].get<int>("z"); });
  CHECK(missing.find("s.json:3: v.z") != std::string::npos);
  CHECK(missing.find("missing required field") != std::string::npos);
}

TEST_CASE("without the text, errors keep the file and field only") {
  const auto j = json::Json::parse(R"({"v": {"y": 500}})");
  const json::Field root(j, "s.json");
  try {
    root["v"].number("y", 0, 100);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("in s.json: v.y:") != std::string::npos);
  }
}

TEST_CASE("scenario errors from a file carry the line") {
  const std::string bad = "{\n \"schema_version\": 1,\n \"name\": \"x\",\n \"duration_s\": 5,\n \"processors\": [{\"name\": \"c\"}],\n"
                          " \"tasks\": [\n  {\"task\": \"t\", \"rate_rps\": 1,\n   \"deadline_ms\": -3}\n ]\n}\n";
  const auto doc = json::parse_document(bad, "bad.json");
  try {
    scenario::parse_scenario(doc.root());
    FAIL("accepted a negative deadline");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("bad.json:8: tasks[0].deadline_ms") != std::string::npos);
  }
}
