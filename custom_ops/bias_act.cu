// CUDA kernel for the fused bias_act op: one thread per element, grid-stride loop.
// The math lives in bias_act.h; this file only launches it for each dtype.
//
// Wrapper: torch_utils/ops/bias_act.py (autograd, reference path, plugin spec); built by torch_utils/custom_ops.py.
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>
#include <ATen/Dispatch.h>
#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include "bias_act.h"

namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 65535LL * 8;

template <class T, class Index>
__global__ void bias_act_kernel(su_bias_act::Params p) {
    const Index step = static_cast<Index>(blockDim.x) * static_cast<Index>(gridDim.x);
    const Index n = static_cast<Index>(p.numel);
    for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
        su_bias_act::compute_one<T, Index>(p, i);
    }
}

template <class T>
void launch_typed(const su_bias_act::Params& p, cudaStream_t stream) {
    int64_t blocks = (p.numel + kThreads - 1) / kThreads;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    if (blocks < 1) blocks = 1;
    const int64_t step = blocks * kThreads;
    // 32-bit indexing is noticeably faster (64-bit division is emulated); use it
    // whenever the loop counter cannot overflow.
    if (p.numel + step <= static_cast<int64_t>(std::numeric_limits<int32_t>::max())) {
        bias_act_kernel<T, int32_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    } else {
        bias_act_kernel<T, int64_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    }
    const cudaError_t err = cudaGetLastError();
    TORCH_CHECK(err == cudaSuccess, "bias_act: CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

void su_bias_act_launch(const su_bias_act::Params& p, int dtype, void* stream) {
    if (p.numel == 0) return;
    const auto scalar_type = static_cast<c10::ScalarType>(dtype);
    auto cuda_stream = static_cast<cudaStream_t>(stream);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, scalar_type, "su_bias_act_launch", [&] {
        launch_typed<scalar_t>(p, cuda_stream);
    });
}
