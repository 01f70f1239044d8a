// sparseloom-bench-dispatch: the Engine's per-request overhead against calling the same
// blocks directly. Fake-runner mode (default): a synthetic block library whose blocks spin for
// a configured time, the size of the smallest zoo model; a real block library plugs into
// measure_dispatch() unchanged.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dispatch.hpp"
#include "sparseloom/runtime/synthetic.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Engine dispatch overhead vs direct calls of the same blocks"};
  double model_ms = 0.2;
  int blocks = 4, requests = 2000, rounds = 10;
  std::string json_path;
  app.add_option("--model-ms", model_ms, "fake runner: time of one request (all blocks), ms")->check(CLI::PositiveNumber);
  app.add_option("--blocks", blocks, "fake runner: blocks per request")->check(CLI::Range(1, 64));
  app.add_option("--requests", requests, "requests measured each way")->check(CLI::Range(10, 10'000'000));
  app.add_option("--rounds", rounds, "alternating rounds of direct and engine runs")->check(CLI::Range(1, 1000));
  app.add_option("--json", json_path, "write the result as JSON here");
  CLI11_PARSE(app, argc, argv);

  namespace syn = sparseloom::runtime::synthetic;
  syn::Zoo zoo;
  zoo.blocks = blocks;
  zoo.task_block_ms = {model_ms / blocks};
  syn::Runner runner(zoo, syn::Wait::spin);
  syn::Estimator est(zoo);
  sparseloom::StitchedVariant v;
  v.choice.assign(static_cast<std::size_t>(blocks), 0);
  const std::vector<sparseloom::Tensor> input{
      sparseloom::Tensor::zeros({1, 16}, sparseloom::DType::f32)};
  const auto r = sparseloom::bench::measure_dispatch(runner, est, v, input, requests, rounds);

  std::printf("runner: synthetic (spin), %d blocks, %.3f ms per request, %d requests each way\n", blocks, model_ms,
              r.requests);
  std::printf("direct            %9.4f ms (median per request)\n", r.direct_ms);
  std::printf("engine            %9.4f ms (end to end %.4f ms, less queue handoff and caller wake-up)\n", r.engine_ms,
              r.engine_e2e_ms);
  std::printf("queue handoff     %9.4f ms (enqueue -> worker takes it; idle queue)\n", r.handoff_ms);
  std::printf("caller wake-up    %9.4f ms (result recorded -> wait() returns)\n", r.wakeup_ms);
  std::printf("dispatch overhead %+8.2f %%  (engine / direct - 1; target < 2 %%)\n", r.dispatch_overhead * 100);
  std::printf("end-to-end ratio  %9.3f x  (engine end to end / direct)\n", r.e2e_ratio);
  if (!json_path.empty()) {
    nlohmann::json j{{"schema_version", 1},
                     {"bench", "dispatch"},
                     {"runner", "synthetic-spin"},
                     {"blocks", blocks},
                     {"model_ms", model_ms},
                     {"requests", r.requests},
                     {"direct_ms", r.direct_ms},
                     {"engine_ms", r.engine_ms},
                     {"engine_e2e_ms", r.engine_e2e_ms},
                     {"queue_handoff_ms", r.handoff_ms},
                     {"caller_wakeup_ms", r.wakeup_ms},
                     {"dispatch_overhead", r.dispatch_overhead},
                     {"e2e_ratio", r.e2e_ratio},
                     {"target_overhead", 0.02}};
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
}
