#pragma once
// The BlockRunner concept: what the Engine needs from a block library. A block library holds,
// per (task, block, variant), the block compiled for each processor, and runs block b of a
// stitched variant (its source variant s.choice[b], with the stitch's repair epilogue) on one
// processor. The Engine never sees backends: the library dispatches to them by compile-time
// index, so the request path has no virtual call.
#include <concepts>
#include <cstddef>
#include <span>
#include <vector>

#include "sparseloom/core/tensor.hpp"
#include "sparseloom/core/types.hpp"

namespace sparseloom::runtime {

// Members, and how the Engine calls them:
//  - num_tasks(), num_blocks(t), num_variants(t), num_processors(): the library's shape; the
//    Engine checks it against the estimator's at construction.
//  - run(t, s, b, p, in): runs block b of stitch s on processor p and returns its outputs (the
//    next block's inputs; the last block's are the request's result). Block 0 receives the
//    request's input. A transfer between processors is just the tensor handed over; the
//    library accounts its cost. Throws Error(ErrorCode::device) when the processor fails (the
//    Engine marks it unavailable and re-plans); any other exception fails that request only.
//    Called concurrently from different processors' workers, and from several workers of one
//    processor where ProcessorSpec::workers > 1.
//  - is_resident / load / unload / block_bytes: residency of packed block weights per
//    processor. Called only by the Preloader, serialised by it; a block the Preloader has
//    acquired for a run is never unloaded while it runs. load() throws Error(device) when the
//    block fails to compile for that processor (the Engine then plans around that block).
//  - resident_bytes(): total resident bytes; thread-safe (the Engine samples it after loads).
//    Optional: resident_bytes(p), the block bytes resident on processor p (per-device budgets
//    are then sampled and checked by the Engine too).
template <class L>
concept BlockRunner = requires(L& lib, const L& clib, TaskIndex t, BlockIndex b, VariantIndex v,
                               ProcessorIndex p, std::span<const Tensor> in, const StitchedVariant& s) {
  { clib.num_tasks() } -> std::convertible_to<int>;
  { clib.num_blocks(t) } -> std::convertible_to<int>;
  { clib.num_variants(t) } -> std::convertible_to<int>;
  { clib.num_processors() } -> std::convertible_to<int>;
  { lib.run(t, s, b, p, in) } -> std::same_as<std::vector<Tensor>>;
  { clib.is_resident(t, b, v, p) } -> std::convertible_to<bool>;
  lib.load(t, b, v, p);
  lib.unload(t, b, v, p);
  { clib.resident_bytes() } -> std::convertible_to<std::size_t>;
  { clib.block_bytes(t, b, v, p) } -> std::convertible_to<std::size_t>;
};

// Calls f(t, b, v, p) for every block slot of the library (resident or not).
template <class L, class F>
void for_each_block_slot(const L& lib, F&& f) {
  for (int t = 0; t < lib.num_tasks(); ++t)
    for (int b = 0; b < lib.num_blocks(t); ++b)
      for (int v = 0; v < lib.num_variants(t); ++v)
        for (int p = 0; p < lib.num_processors(); ++p) f(t, b, v, p);
}

// Optional: a runner that can stand in for run() in simulated time (a cost model).
// simulate(t, s, b, p) checks the same faults run() would (throws the same errors) and returns
// the modelled time of the block in ms, without running it. The discrete-event mode of the
// Engine uses it; without it, that mode takes the estimator's block_latency_ms and runs nothing.
template <class L>
concept ModelledBlockRunner = BlockRunner<L> &&
    requires(L& lib, TaskIndex t, BlockIndex b, ProcessorIndex p, const StitchedVariant& s) {
      { lib.simulate(t, s, b, p) } -> std::convertible_to<double>;
    };

}  // namespace sparseloom::runtime
