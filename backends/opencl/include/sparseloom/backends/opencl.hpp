#pragma once
// The OpenCL backend: device selection, context/queues, program cache, resident buffers,
// and the op launchers. Only this tree includes OpenCL headers; the core never does.
#include "sparseloom/backends/opencl/buffer.hpp"
#include "sparseloom/backends/opencl/context.hpp"
#include "sparseloom/backends/opencl/device.hpp"
#include "sparseloom/backends/opencl/error.hpp"
#include "sparseloom/backends/opencl/formats.hpp"
#include "sparseloom/backends/opencl/ops.hpp"
#include "sparseloom/backends/opencl/program_cache.hpp"
