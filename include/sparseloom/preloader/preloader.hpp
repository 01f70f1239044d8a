#pragma once
// The shipped memory policies (each models runtime::Preloader; checked in tests/preloader):
//  - Hotness          SparseLoom's hot-subgraph preloader (the default for SparseLoom runs)
//  - OnDemandLru      SparseLoom without the preloader: per block on demand, LRU eviction
//  - ClockworkLike    whole models on demand, most-demanded first, evict no-demand then LRU
//  - OneModelPerTask  Band-like: each task's planned model whole on every processor
//  - runtime::LoadAllPreloader  load what the plan uses, evict only under a budget
// Pick one at compile time as the Engine's Preloader template argument (docs/preloader.md).
#include "sparseloom/preloader/clockwork_like.hpp"
#include "sparseloom/preloader/hotness.hpp"
#include "sparseloom/preloader/on_demand_lru.hpp"
#include "sparseloom/preloader/one_model_per_task.hpp"
#include "sparseloom/preloader/residency.hpp"
#include "sparseloom/runtime/preloader.hpp"
