// sparseloom zoo OUT_DIR --base FILE --variant NAME=FILE... --test-x X.npy --test-y Y.npy:
// assembles a zoo task directory from a user's own ONNX variants of one base model. Checks
// that every variant has the base's input and output, picks cut points from the base (tensors
// through which all data flows, spread evenly over its nodes) and checks every variant can be
// cut there; copies the files, measures each variant's accuracy, the single-block swaps into
// the base and a few random stitches on the reference backend, and writes manifest.json.
// No stitch-time repair is derived (that needs the Python builder, tools/zoo).
#include <fmt/ranges.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "common.hpp"
#include "progress.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/stitch/stitched_model.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

namespace sparseloom::cli {
namespace {

struct Args {
  std::string out, base, task, test_x, test_y, calib_x, classes_hint;
  std::vector<std::string> variants;
  int blocks = 4, stitches = 16, threads = 2;
  double scale = 1.0 / 255, mean = 0, stdev = 1;
};

// Tensors that alone carry everything from one part of the base to the rest: after node i, the
// only non-initializer tensor produced so far and still needed later.
std::vector<std::string> single_tensor_cuts(const ir::Graph& g) {
  std::map<std::string, std::size_t> last_use;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty() && !g.is_initializer(in)) last_use[in] = i;
  for (const auto& o : g.outputs) last_use[o.name] = g.nodes.size();
  std::set<std::string> live;
  for (const auto& in : g.inputs) live.insert(in.name);
  std::vector<std::string> cuts;
  for (std::size_t i = 0; i + 1 < g.nodes.size(); ++i) {
    for (const auto& o : g.nodes[i].outputs) live.insert(o);
    for (auto it = live.begin(); it != live.end();) it = last_use.count(*it) && last_use[*it] > i ? std::next(it) : live.erase(it);
    if (live.size() == 1 && g.nodes[i].outputs.size() == 1 && *live.begin() == g.nodes[i].outputs[0]) cuts.push_back(*live.begin());
  }
  return cuts;
}

std::pair<std::int64_t, std::int64_t> weight_counts(const ir::Graph& g) {
  std::int64_t params = 0, nz = 0;
  for (const auto& [_, t] : g.initializers) {
    if (t.rank() < 2) continue;
    params += t.numel();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      nz += t.dtype() == DType::f32 ? t.data<float>()[i] != 0.f : t.dtype() == DType::i8 ? t.data<std::int8_t>()[i] != 0 : 1;
  }
  return {params, nz};
}

int do_zoo(const Args& a, const Globals& g) {
  namespace fs = std::filesystem;
  const bool quiet = g.quiet || g.json;
  check(a.blocks >= 1 && a.blocks <= 16, ErrorCode::invalid_argument, "--blocks", "between 1 and 16");
  std::vector<std::pair<std::string, fs::path>> files{{"base", a.base}};
  for (const auto& v : a.variants) {
    const auto eq = v.find('=');
    check(eq != std::string::npos && eq > 0, ErrorCode::invalid_argument, "--variant " + v, "expected NAME=FILE.onnx");
    files.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  std::vector<ir::Graph> graphs;
  {
    Progress bar("importing variants", static_cast<double>(files.size()), "models", quiet);
    for (const auto& [name, f] : files) {
      graphs.push_back(onnx_io::import_file(f));
      bar.update(static_cast<double>(graphs.size()), name);
    }
  }
  const ir::Graph& base = graphs[0];
  check(base.inputs.size() == 1 && base.outputs.size() == 1, ErrorCode::unsupported, a.base, "the base must have one input and one output");
  for (std::size_t i = 1; i < graphs.size(); ++i) {
    const auto& gi = graphs[i];
    check(gi.inputs.size() == 1 && gi.inputs[0].name == base.inputs[0].name && gi.inputs[0].shape == base.inputs[0].shape, ErrorCode::shape,
          files[i].second.string(), "its input differs from the base's " + base.inputs[0].name + " " + to_string(base.inputs[0].shape));
    check(gi.outputs.size() == 1 && gi.outputs[0].shape == base.outputs[0].shape, ErrorCode::shape, files[i].second.string(),
          "its output differs from the base's " + to_string(base.outputs[0].shape));
  }
  // Cut points: base cuts present in every variant, evenly spread.
  std::vector<std::string> usable;
  for (const auto& c : single_tensor_cuts(base)) {
    bool all = true;
    for (const auto& gi : graphs) all = all && gi.values.count(c);
    if (all) usable.push_back(c);
  }
  check(static_cast<int>(usable.size()) >= a.blocks - 1, ErrorCode::unsupported, a.base,
        fmt::format("only {} single-tensor cut points shared by every variant; ask for at most {} blocks", usable.size(), usable.size() + 1));
  std::vector<std::string> cuts;
  for (int k = 1; k < a.blocks; ++k) cuts.push_back(usable[usable.size() * static_cast<std::size_t>(k) / static_cast<std::size_t>(a.blocks)]);
  std::vector<std::string> bounds{base.inputs[0].name};
  bounds.insert(bounds.end(), cuts.begin(), cuts.end());
  bounds.push_back(base.outputs[0].name);
  for (std::size_t i = 0; i < graphs.size(); ++i) {
    try {
      stitch::partition(graphs[i], bounds);
    } catch (const Error& e) {
      throw Error(ErrorCode::shape, files[i].second.string(), std::string("cannot be cut at the base's cut points: ") + e.what());
    }
  }
  // The directory: models and data copied in, then a manifest without the stitch check.
  fs::create_directories(a.out);
  const Tensor tx = npy::load(a.test_x), ty = npy::load(a.test_y);
  check(tx.dtype() == DType::u8 || tx.dtype() == DType::i16, ErrorCode::unsupported, a.test_x, "test inputs must be uint8 or int16 raw data");
  const std::string task = a.task.empty() ? fs::path(a.out).filename().string() : a.task;
  json::Json man{{"schema_version", zoo::kManifestSchema}, {"task", task}, {"description", "assembled by sparseloom zoo"}, {"base", "base"}};
  man["input"] = {{"name", base.inputs[0].name}, {"shape", base.inputs[0].shape}, {"raw_dtype", tx.dtype() == DType::u8 ? "uint8" : "int16"},
                  {"preprocess", {{"scale", a.scale}, {"mean", a.mean}, {"std", a.stdev}}}};
  man["output"] = json::Json::object();
  fs::copy_file(a.test_x, fs::path(a.out) / "test_x.npy", fs::copy_options::overwrite_existing);
  fs::copy_file(a.test_y, fs::path(a.out) / "test_y.npy", fs::copy_options::overwrite_existing);
  const std::string calib = a.calib_x.empty() ? a.test_x : a.calib_x;
  fs::copy_file(calib, fs::path(a.out) / "calib_x.npy", fs::copy_options::overwrite_existing);
  man["test_data"] = {{"x", "test_x.npy"}, {"y", "test_y.npy"}, {"count", tx.dim(0)}};
  man["calib_data"] = {{"x", "calib_x.npy"}, {"count", npy::load(calib).dim(0)}};
  for (std::size_t b = 0; b + 1 < bounds.size(); ++b) man["blocks"].push_back({{"index", b}, {"input", bounds[b]}, {"output", bounds[b + 1]}});
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string file = files[i].first + ".onnx";
    fs::copy_file(files[i].second, fs::path(a.out) / file, fs::copy_options::overwrite_existing);
    const auto [params, nz] = weight_counts(graphs[i]);
    bool int8 = false;
    for (const auto& n : graphs[i].nodes) int8 = int8 || n.op == "DequantizeLinear" || n.op == "QLinearConv";
    const double sp = params ? 1.0 - static_cast<double>(nz) / static_cast<double>(params) : 0.0;
    man["variants"].push_back({{"name", files[i].first}, {"file", file},
                               {"compression", {{"kind", sp < 0.01 ? "dense" : "unstructured"}, {"sparsity", sp}, {"int8", int8}}},
                               {"accuracy_pct", 0.0}, {"params", params}, {"nonzeros", nz},
                               {"bytes", static_cast<std::int64_t>(fs::file_size(files[i].second))}});
  }
  const auto manifest_path = fs::path(a.out) / "manifest.json";
  auto write = [&] {
    std::ofstream f(manifest_path);
    check(f.good(), ErrorCode::io, manifest_path.string(), "cannot open for writing");
    f << man.dump(1);
  };
  write();
  // Measure on the reference backend: plain variants, single swaps, random stitches.
  const zoo::TaskZoo z = zoo::load_task(a.out);
  const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
  const int B = z.num_blocks(), V = z.num_variants(), base_v = z.base();
  std::vector<StitchedVariant> rand;
  std::mt19937_64 rng(7);
  for (int k = 0; k < a.stitches && V > 1 && B > 1; ++k) {
    StitchedVariant s;
    for (int b = 0; b < B; ++b) s.choice.push_back(static_cast<int>(rng() % static_cast<std::uint64_t>(V)));
    if (!s.is_plain()) rand.push_back(std::move(s));
  }
  const double total = V + static_cast<double>(B) * (V - 1) + static_cast<double>(rand.size());
  Progress bar("measuring accuracy", total, "models", quiet);
  double done = 0;
  auto measure = [&](const StitchedVariant& s) {
    const double acc = model.accuracy_pct(s, nullptr, a.threads);
    bar.update(++done);
    return acc;
  };
  for (int v = 0; v < V; ++v) man["variants"][static_cast<std::size_t>(v)]["accuracy_pct"] = measure(model.plain(v));
  json::Json singles = json::Json::object();
  for (int v = 0; v < V; ++v) {
    if (v == base_v) continue;
    std::vector<double> accs;
    for (int b = 0; b < B; ++b) {
      StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), base_v)};
      s.choice[static_cast<std::size_t>(b)] = v;
      accs.push_back(measure(s));
    }
    singles[z.manifest.variants[static_cast<std::size_t>(v)].name] = accs;
  }
  json::Json st = json::Json::array();
  for (const auto& s : rand) {
    std::vector<std::string> names;
    for (auto v : s.choice) names.push_back(z.manifest.variants[static_cast<std::size_t>(v)].name);
    st.push_back({{"variants", names}, {"accuracy_pct", measure(s)}});
  }
  bar.finish();
  // Without a repair, the repaired and unrepaired stitch are the same model: both keys hold it.
  man["stitch_check"] = {{"no_repair", {{"stitches", st}}}, {"repair", {{"stitches", st}}}, {"single_swap", singles}, {"single_swap_repair", singles}};
  write();
  zoo::load_manifest(a.out);  // what we wrote must read back
  if (g.json) {
    fmt::print("{}\n", json::Json{{"task_dir", a.out}, {"manifest", manifest_path.string()}, {"cuts", cuts}, {"variants", V}, {"blocks", B},
                                  {"measured_stitches", st.size()}}.dump(1));
    return kOk;
  }
  fmt::print("zoo task {} written to {}: {} variants, {} blocks cut at {}\n", task, a.out, V, B, fmt::format("{}", fmt::join(cuts, ", ")));
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : man["variants"])
    rows.push_back({v["name"], fmt::format("{:.1f} %", 100 * v["compression"]["sparsity"].get<double>()), fmt::format("{:.2f} %", v["accuracy_pct"].get<double>())});
  print_table({"variant", "sparsity", "accuracy"}, rows);
  return kOk;
}

}  // namespace

void add_zoo(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("zoo", "Assemble a zoo task directory (manifest, cut points, measured accuracies) from your own ONNX variants");
  auto a = std::make_shared<Args>();
  sub->add_option("out", a->out, "task directory to write")->required();
  sub->add_option("--base", a->base, "the dense base model (.onnx)")->required()->check(CLI::ExistingFile);
  sub->add_option("--variant", a->variants, "NAME=FILE.onnx, a sparse/INT8 variant of the base (repeat)")->required();
  sub->add_option("--test-x", a->test_x, "test inputs, raw uint8/int16 .npy (N, ...)")->required()->check(CLI::ExistingFile);
  sub->add_option("--test-y", a->test_y, "test labels, int64 .npy (N)")->required()->check(CLI::ExistingFile);
  sub->add_option("--calib-x", a->calib_x, "calibration inputs (default: the test inputs)")->check(CLI::ExistingFile);
  sub->add_option("--task", a->task, "task name (default: the directory's name)");
  sub->add_option("--blocks", a->blocks, "number of blocks to cut the models into");
  sub->add_option("--stitches", a->stitches, "random stitched variants to measure for the accuracy model");
  sub->add_option("--scale", a->scale, "preprocessing: x = (raw * scale - mean) / std");
  sub->add_option("--mean", a->mean, "preprocessing mean");
  sub->add_option("--std", a->stdev, "preprocessing std");
  sub->add_option("--threads", a->threads, "threads for measuring accuracy");
  sub->callback([a, &g] { g.action = [a, &g] { return do_zoo(*a, g); }; });
}

}  // namespace sparseloom::cli
