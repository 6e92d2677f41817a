// Python binding of the fused bias_act CUDA op.
//
// Wrapper: torch_utils/ops/bias_act.py; built by torch_utils/custom_ops.py.
// Called only from torch_utils/ops/bias_act.py, which owns autograd; this file
// validates the tensors (so a misuse fails with a readable message rather than a
// wrong answer or an illegal memory access) and hands raw pointers to the kernel.
#include <optional>
#include <string>

#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "bias_act.h"

namespace {

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
    TORCH_CHECK(t.device() == x.device(), "bias_act: '", name, "' is on ", t.device(), " but x is on ", x.device());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: '", name, "' has dtype ", t.scalar_type(),
                " but x has dtype ", x.scalar_type());
    TORCH_CHECK(t.sizes() == x.sizes(), "bias_act: '", name, "' has shape ", t.sizes(), " but x has shape ", x.sizes());
    TORCH_CHECK(t.strides() == x.strides(), "bias_act: '", name, "' has strides ", t.strides(),
                " but x has strides ", x.strides(), " (the caller must give all tensors one memory layout)");
}

// x: main input; b: bias or None; xref/aux: see su_bias_act::Mode in bias_act.h.
at::Tensor bias_act_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& xref,
                         const std::optional<at::Tensor>& aux, int64_t mode,
                         int64_t dim, int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor, got one on ", x.device());
    const auto dtype = x.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
                "bias_act: x must be float16, bfloat16, float32 or float64, got ", dtype);
    TORCH_CHECK(x.is_non_overlapping_and_dense(),
                "bias_act: x must be dense in memory (contiguous or channels_last); call .contiguous() first");
    TORCH_CHECK(mode >= su_bias_act::kForward && mode <= su_bias_act::kGrad2, "bias_act: invalid mode ", mode);
    TORCH_CHECK(act >= 0 && act < su_bias_act::kNumActivations, "bias_act: invalid activation id ", act);

    su_bias_act::Params p;
    p.x = x.data_ptr();
    p.numel = x.numel();
    p.mode = static_cast<int>(mode);
    p.act = static_cast<int>(act);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;

    if (b.has_value() && b->defined()) {
        const at::Tensor& bias = *b;
        TORCH_CHECK(x.dim() > 0, "bias_act: a bias needs x with at least one dimension");
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " is out of range for x with ", x.dim(), " dims");
        TORCH_CHECK(bias.device() == x.device(), "bias_act: b is on ", bias.device(), " but x is on ", x.device());
        TORCH_CHECK(bias.scalar_type() == dtype, "bias_act: b has dtype ", bias.scalar_type(), " but x has dtype ", dtype);
        TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(dim), "bias_act: b must have shape [", x.size(dim),
                    "] (x.shape[", dim, "]), got ", bias.sizes());
        TORCH_CHECK(bias.is_contiguous(), "bias_act: b must be contiguous");
        p.b = bias.data_ptr();
        p.bias_size = x.size(dim);
        // A size-1 dim may carry any stride (even 0); its index is always 0.
        p.bias_step = p.bias_size > 1 ? x.stride(dim) : 1;
    }

    if (mode != su_bias_act::kForward) {
        if (xref.has_value() && xref->defined()) {
            check_like(*xref, x, "xref");
            p.xref = xref->data_ptr();
        } else {
            TORCH_CHECK(act == su_bias_act::kLinear && clamp < 0,
                        "bias_act: the gradient of a non-linear or clamped op needs the forward input");
        }
    }
    if (mode == su_bias_act::kGrad2) {
        TORCH_CHECK(aux.has_value() && aux->defined(), "bias_act: second-order mode needs the first upstream gradient");
        check_like(*aux, x, "aux");
        p.aux = aux->data_ptr();
    }

    // empty_like keeps x's (dense) strides, so one memory offset addresses every tensor.
    at::Tensor out = at::empty_like(x);
    p.out = out.data_ptr();

    const c10::cuda::CUDAGuard guard(x.device());
    su_bias_act_launch(p, static_cast<int>(dtype), static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()));
    return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "stylegan-unmask fused bias + activation + gain + clamp (CUDA)";
    m.def("bias_act", &bias_act_cuda, "fused bias_act kernel (forward, grad and second-order grad modes)",
          pybind11::arg("x"), pybind11::arg("b"), pybind11::arg("xref"), pybind11::arg("aux"),
          pybind11::arg("mode"), pybind11::arg("dim"), pybind11::arg("act"), pybind11::arg("alpha"),
          pybind11::arg("gain"), pybind11::arg("clamp"));
    m.attr("kForward") = static_cast<int>(su_bias_act::kForward);
    m.attr("kGrad") = static_cast<int>(su_bias_act::kGrad);
    m.attr("kGrad2") = static_cast<int>(su_bias_act::kGrad2);
}
