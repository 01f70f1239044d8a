// libFuzzer target: ONNX bytes -> import (parse, validate, infer shapes, fold) and, when the
// model is small, one run on the reference backend. Any Error is fine; a crash is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sparseloom;
  try {
    onnx_io::ImportOptions opt;
    opt.max_file_bytes = 1 << 20;
    opt.max_tensor_bytes = 1 << 26;
    ir::Graph g = onnx_io::import_bytes(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.onnx", opt);
    std::int64_t work = 0;
    for (const auto& [_, v] : g.values) work += numel_of(v.shape);
    if (work > (1 << 20)) return 0;  // keep each run fast
    std::vector<Tensor> in;
    for (const auto& vi : g.inputs) in.push_back(Tensor::zeros(vi.shape, vi.dtype));
    reference::Backend{}.compile(g).run(in);
  } catch (const Error&) {
  }
  return 0;
}
