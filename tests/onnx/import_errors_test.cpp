#include <doctest/doctest.h>

#include "model_builder.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/import.hpp"

using namespace sparseloom;
using sparseloom::testing::ModelBuilder;

namespace {
ModelBuilder conv_model() {
  ModelBuilder b;
  b.input("x", {1, 3, 8, 8}).weight("w", {4, 3, 3, 3}).weight("bias", {4}).output("y");
  auto& c = b.node("Conv", {"x", "w", "bias"}, {"c"}, "conv1");
  sparseloom::testing::add_ints(c, "pads", {1, 1, 1, 1});
  b.node("Relu", {"c"}, {"y"}, "relu1");
  return b;
}

ErrorCode code_of(const std::string& bytes) {
  try {
    onnx_io::import_bytes(bytes, "bad.onnx");
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("import did not throw");
  return ErrorCode::internal;
}
}  // namespace

TEST_CASE("Onnx.Import.ValidModelImportsAndRuns") {
  ir::Graph g = onnx_io::import_bytes(conv_model().bytes(), "ok.onnx");
  CHECK(g.nodes.size() == 2);
  CHECK(g.value("y").shape == Shape{1, 4, 8, 8});
  auto y = reference::Backend{}.compile(g).run(std::vector<Tensor>{Tensor::zeros({1, 3, 8, 8}, DType::f32)});
  CHECK(y[0].data<float>()[0] == doctest::Approx(0.5f));  // relu(bias) with zero input
}

TEST_CASE("Onnx.Import.MissingFile") {
  CHECK_THROWS_WITH_AS(onnx_io::import_file("/nonexistent/model.onnx"), doctest::Contains("/nonexistent/model.onnx"), Error);
}

TEST_CASE("Onnx.Import.GarbageAndTruncatedBytes") {
  CHECK(code_of("this is not a model") == ErrorCode::parse);
  const std::string good = conv_model().bytes();
  // Every truncation either fails cleanly or (rarely) still parses into a checked model.
  for (std::size_t cut = 0; cut < good.size(); cut += 7) {
    try {
      onnx_io::import_bytes(good.substr(0, cut), "truncated.onnx");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("truncated.onnx") != std::string::npos);
    }
  }
  CHECK(code_of(good.substr(0, good.size() / 2)) == ErrorCode::parse);
}

TEST_CASE("Onnx.Import.UnsupportedOpNamesTheNode") {
  ModelBuilder b = conv_model();
  b.node("NonMaxSuppression", {"y"}, {"z"}, "nms");
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(b.bytes(), "m.onnx"), doctest::Contains("node 'nms' (NonMaxSuppression)"), Error);
}

TEST_CASE("Onnx.Import.WrongOpset") {
  ModelBuilder b(7);
  b.input("x", {1, 2}).output("y");
  b.node("Relu", {"x"}, {"y"});
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(b.bytes(), "m.onnx"), doctest::Contains("opset 7"), Error);
  ModelBuilder c(99);
  c.input("x", {1, 2}).output("y");
  c.node("Relu", {"x"}, {"y"});
  CHECK(code_of(c.bytes()) == ErrorCode::unsupported);
}

TEST_CASE("Onnx.Import.MissingInitializer") {
  ModelBuilder b;
  b.input("x", {1, 3, 8, 8}).output("y");
  b.node("Conv", {"x", "w_missing"}, {"y"}, "conv1");
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(b.bytes(), "m.onnx"), doctest::Contains("'w_missing'"), Error);
}

TEST_CASE("Onnx.Import.ShapeMismatchNamesNode") {
  ModelBuilder b;
  b.input("x", {1, 5, 8, 8}).weight("w", {4, 3, 3, 3}).output("y");  // 5 channels, weight wants 3
  b.node("Conv", {"x", "w"}, {"y"}, "conv1");
  try {
    onnx_io::import_bytes(b.bytes(), "m.onnx");
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::shape);
    CHECK(std::string(e.what()).find("node 'conv1' (Conv)") != std::string::npos);
  }
}

TEST_CASE("Onnx.Import.InitializerSizeMismatch") {
  ModelBuilder b = conv_model();
  b.g->mutable_initializer(0)->add_dims(2);  // dims now claim twice the bytes
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(b.bytes(), "m.onnx"), doctest::Contains("initializer 'w'"), Error);
}

TEST_CASE("Onnx.Import.ExternalDataAndBadTypes") {
  ModelBuilder b = conv_model();
  b.g->mutable_initializer(0)->set_data_location(::onnx::TensorProto::EXTERNAL);
  CHECK(code_of(b.bytes()) == ErrorCode::unsupported);
  ModelBuilder c = conv_model();
  c.g->mutable_initializer(0)->set_data_type(::onnx::TensorProto::COMPLEX64);
  CHECK(code_of(c.bytes()) == ErrorCode::unsupported);
}

TEST_CASE("Onnx.Import.DuplicateOutputAndMissingGraphOutput") {
  ModelBuilder b = conv_model();
  b.node("Relu", {"x"}, {"y"}, "dup");
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(b.bytes(), "m.onnx"), doctest::Contains("produced twice"), Error);
  ModelBuilder c = conv_model();
  c.output("never");
  CHECK_THROWS_WITH_AS(onnx_io::import_bytes(c.bytes(), "m.onnx"), doctest::Contains("'never'"), Error);
}
