// Python binding of the upfirdn2d CUDA op.
//
// Wrapper: torch_utils/ops/upfirdn2d.py; built by torch_utils/custom_ops.py.
// Called only from torch_utils/ops/upfirdn2d.py, which folds the gain into the
// filter, splits separable filters into two passes and owns autograd. This file
// validates the arguments and hands raw pointers and strides to the kernel.
#include <cstdint>
#include <limits>

#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "upfirdn2d.h"

namespace {

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                          int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                          bool flip_filter) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor, got one on ", x.device());
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must have shape [N, C, H, W], got ", x.sizes());
    const auto dtype = x.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
                "upfirdn2d: x must be float16, bfloat16, float32 or float64, got ", dtype);
    const auto filter_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d: the filter is on ", f.device(), " but x is on ", x.device());
    TORCH_CHECK(f.scalar_type() == filter_dtype, "upfirdn2d: the filter must be ", filter_dtype, " for x of dtype ",
                dtype, ", got ", f.scalar_type());
    TORCH_CHECK(f.dim() == 2 && f.size(0) >= 1 && f.size(1) >= 1,
                "upfirdn2d: the filter must have shape [fh, fw] with fh, fw >= 1, got ", f.sizes());
    TORCH_CHECK(f.is_contiguous(), "upfirdn2d: the filter must be contiguous");
    TORCH_CHECK(up_x >= 1 && up_y >= 1, "upfirdn2d: up factors must be >= 1, got [", up_x, ", ", up_y, "]");
    TORCH_CHECK(down_x >= 1 && down_y >= 1, "upfirdn2d: down factors must be >= 1, got [", down_x, ", ", down_y, "]");

    constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
    TORCH_CHECK(up_x <= kIntMax && up_y <= kIntMax && down_x <= kIntMax && down_y <= kIntMax &&
                    pad_x0 <= kIntMax && pad_x0 >= -kIntMax && pad_y0 <= kIntMax && pad_y0 >= -kIntMax,
                "upfirdn2d: up/down/padding out of range");
    const int64_t in_h = x.size(2), in_w = x.size(3);
    const int64_t fh = f.size(0), fw = f.size(1);
    const int64_t span_w = in_w * up_x + pad_x0 + pad_x1 - fw;  // valid-convolution extent minus one
    const int64_t span_h = in_h * up_y + pad_y0 + pad_y1 - fh;
    TORCH_CHECK(span_w >= 0 && span_h >= 0, "upfirdn2d: input ", in_h, "x", in_w, " with up [", up_x, ", ", up_y,
                "], padding [", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1, "] is smaller than the ", fh, "x",
                fw, " filter");
    const int64_t out_w = span_w / down_x + 1;
    const int64_t out_h = span_h / down_y + 1;
    TORCH_CHECK(fh <= kIntMax && fw <= kIntMax && out_h * out_w <= kIntMax,
                "upfirdn2d: filter or output plane too large");

    at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(x.suggest_memory_format()));

    su_upfirdn2d::Params p;
    p.x = x.data_ptr();
    p.f = f.data_ptr();
    p.y = y.data_ptr();
    p.planes = x.size(0) * x.size(1);
    p.channels = x.size(1);
    p.in_h = in_h;
    p.in_w = in_w;
    p.out_h = out_h;
    p.out_w = out_w;
    for (int d = 0; d < 4; ++d) {
        p.x_stride[d] = x.stride(d);
        p.y_stride[d] = y.stride(d);
    }
    p.filter_h = static_cast<int>(fh);
    p.filter_w = static_cast<int>(fw);
    p.up_x = static_cast<int>(up_x);
    p.up_y = static_cast<int>(up_y);
    p.down_x = static_cast<int>(down_x);
    p.down_y = static_cast<int>(down_y);
    p.pad_x0 = static_cast<int>(pad_x0);
    p.pad_y0 = static_cast<int>(pad_y0);
    p.flip_filter = flip_filter ? 1 : 0;

    const c10::cuda::CUDAGuard guard(x.device());
    su_upfirdn2d_launch(p, static_cast<int>(dtype), static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()));
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "stylegan-unmask upsample / pad / FIR filter / downsample (CUDA)";
    m.def("upfirdn2d", &upfirdn2d_cuda, "upfirdn2d kernel with a 2-D filter (gain already folded in)",
          pybind11::arg("x"), pybind11::arg("f"), pybind11::arg("up_x"), pybind11::arg("up_y"),
          pybind11::arg("down_x"), pybind11::arg("down_y"), pybind11::arg("pad_x0"), pybind11::arg("pad_x1"),
          pybind11::arg("pad_y0"), pybind11::arg("pad_y1"), pybind11::arg("flip_filter"));
}
