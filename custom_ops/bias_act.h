// Fused bias + activation + gain + clamp for stylegan-unmask.
//
// This header holds everything that decides *what* is computed: the parameter
// block shared by the host code and the kernel, and the per-element math as
// __host__ __device__ functions. Keeping the math here (and the CUDA file a thin
// loop around it) means the exact same code can be compiled for the CPU and
// checked against the PyTorch reference on a machine without a GPU.
//
// Wrapper: torch_utils/ops/bias_act.py (autograd, reference path, plugin spec); built by torch_utils/custom_ops.py.
#pragma once

#include <cstdint>
#include <math.h>

#if defined(__CUDACC__)
#define SU_BA_HD __host__ __device__ __forceinline__
#else
#define SU_BA_HD inline
#endif

namespace su_bias_act {

// Activation ids; the Python side (torch_utils/ops/bias_act.py) uses the same numbers.
enum Activation : int {
    kLinear = 0,
    kRelu = 1,
    kLrelu = 2,
    kTanh = 3,
    kSigmoid = 4,
    kElu = 5,
    kSelu = 6,
    kSoftplus = 7,
    kSwish = 8,
    kNumActivations = 9,
};

// What one call computes. With s = xref + b (the forward pre-activation),
// v = gain * act(s) (the value before clamping) and
// keep = (clamp < 0 || -clamp <= v <= clamp), i.e. the element was not clamped:
//   kForward: out = clamp(gain * act(x + b))
//   kGrad:    out = x * gain * act'(s) * keep                 (x = upstream gradient dy)
//   kGrad2:   out = x * aux * gain * act''(s) * keep          (x = upstream gradient of dx, aux = dy)
// The gradient modes recompute v rather than reading the stored output: in float16
// a clamped output need not compare equal to the clamp limit after rounding, but
// the recomputed v reproduces the forward decision exactly.
enum Mode : int {
    kForward = 0,
    kGrad = 1,
    kGrad2 = 2,
};

struct Params {
    const void* x = nullptr;     // main input (see Mode)
    const void* b = nullptr;     // bias [bias_size] or nullptr
    const void* xref = nullptr;  // forward input, grad modes only; nullptr when linear and unclamped
    const void* aux = nullptr;   // kGrad2 only: dy of the first backward pass
    void* out = nullptr;
    int64_t numel = 0;
    // All tensors share one dense memory layout; the bias index of the element at
    // memory offset i is (i / bias_step) % bias_size.
    int64_t bias_step = 1;
    int64_t bias_size = 0;
    int mode = kForward;
    int act = kLinear;
    double alpha = 0.0;
    double gain = 1.0;
    double clamp = -1.0;  // negative: no clamping
};

// Arithmetic type: half/bfloat16 inputs are computed in float, double in double.
template <class T> struct Accum { using type = float; };
template <> struct Accum<double> { using type = double; };

SU_BA_HD float ba_exp(float v) { return expf(v); }
SU_BA_HD double ba_exp(double v) { return exp(v); }
SU_BA_HD float ba_expm1(float v) { return expm1f(v); }
SU_BA_HD double ba_expm1(double v) { return expm1(v); }
SU_BA_HD float ba_log1p(float v) { return log1pf(v); }
SU_BA_HD double ba_log1p(double v) { return log1p(v); }
SU_BA_HD float ba_tanh(float v) { return tanhf(v); }
SU_BA_HD double ba_tanh(double v) { return tanh(v); }

template <class A> SU_BA_HD A ba_sigmoid(A s) { return A(1) / (A(1) + ba_exp(-s)); }

// SELU constants (Klambauer et al. 2017), as used by torch.nn.functional.selu.
template <class A> SU_BA_HD A selu_scale() { return A(1.0507009873554804934193349852946); }
template <class A> SU_BA_HD A selu_alpha() { return A(1.6732632423543772848170429916717); }

// softplus switches to the identity above this input, like torch's default threshold.
template <class A> SU_BA_HD A softplus_threshold() { return A(20); }

// act(s)
template <class A>
SU_BA_HD A act_value(int act, A s, A alpha) {
    switch (act) {
        case kRelu: return s > A(0) ? s : A(0);
        case kLrelu: return s > A(0) ? s : s * alpha;
        case kTanh: return ba_tanh(s);
        case kSigmoid: return ba_sigmoid(s);
        case kElu: return s > A(0) ? s : ba_expm1(s);
        case kSelu: return s > A(0) ? selu_scale<A>() * s : selu_scale<A>() * selu_alpha<A>() * ba_expm1(s);
        case kSoftplus: return s > softplus_threshold<A>() ? s : ba_log1p(ba_exp(s));
        case kSwish: return s * ba_sigmoid(s);
        default: return s;  // kLinear
    }
}

// d act / ds. At the kinks the one-sided choice follows PyTorch's autograd
// (relu: 0 at 0, lrelu/elu/selu: the negative-side slope at 0).
template <class A>
SU_BA_HD A act_deriv1(int act, A s, A alpha) {
    switch (act) {
        case kRelu: return s > A(0) ? A(1) : A(0);
        case kLrelu: return s > A(0) ? A(1) : alpha;
        case kTanh: { A t = ba_tanh(s); return A(1) - t * t; }
        case kSigmoid: { A g = ba_sigmoid(s); return g * (A(1) - g); }
        case kElu: return s > A(0) ? A(1) : ba_exp(s);
        case kSelu: return s > A(0) ? selu_scale<A>() : selu_scale<A>() * selu_alpha<A>() * ba_exp(s);
        case kSoftplus: return s > softplus_threshold<A>() ? A(1) : ba_sigmoid(s);
        case kSwish: { A g = ba_sigmoid(s); return g + s * g * (A(1) - g); }
        default: return A(1);  // kLinear
    }
}

// d^2 act / ds^2 (zero for the piecewise-linear activations).
template <class A>
SU_BA_HD A act_deriv2(int act, A s, A alpha) {
    (void)alpha;
    switch (act) {
        case kTanh: { A t = ba_tanh(s); return A(-2) * t * (A(1) - t * t); }
        case kSigmoid: { A g = ba_sigmoid(s); return g * (A(1) - g) * (A(1) - A(2) * g); }
        case kElu: return s > A(0) ? A(0) : ba_exp(s);
        case kSelu: return s > A(0) ? A(0) : selu_scale<A>() * selu_alpha<A>() * ba_exp(s);
        case kSoftplus: { if (s > softplus_threshold<A>()) return A(0); A g = ba_sigmoid(s); return g * (A(1) - g); }
        case kSwish: { A g = ba_sigmoid(s); A d = g * (A(1) - g); return d * (A(2) + s * (A(1) - A(2) * g)); }
        default: return A(0);  // kLinear, kRelu, kLrelu
    }
}

// True when act'' is not identically zero (then kGrad2 has work to do).
SU_BA_HD bool has_second_derivative(int act) {
    return act == kTanh || act == kSigmoid || act == kElu || act == kSelu || act == kSoftplus || act == kSwish;
}

// Computes element i (a memory offset shared by all tensors of the call).
template <class T, class Index>
SU_BA_HD void compute_one(const Params& p, Index i) {
    using A = typename Accum<T>::type;
    const A alpha = static_cast<A>(p.alpha);
    const A gain = static_cast<A>(p.gain);
    const A clamp = static_cast<A>(p.clamp);
    T* out = static_cast<T*>(p.out);
    const A v = static_cast<A>(static_cast<const T*>(p.x)[i]);
    A bias = A(0);
    if (p.b != nullptr) {
        const Index c = (i / static_cast<Index>(p.bias_step)) % static_cast<Index>(p.bias_size);
        bias = static_cast<A>(static_cast<const T*>(p.b)[c]);
    }

    if (p.mode == kForward) {
        A y = act_value<A>(p.act, v + bias, alpha) * gain;
        if (p.clamp >= 0.0) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
        out[i] = static_cast<T>(y);
        return;
    }

    const A s = (p.xref != nullptr ? static_cast<A>(static_cast<const T*>(p.xref)[i]) : A(0)) + bias;
    if (p.clamp >= 0.0) {
        // Same expression as the forward pass, so the same elements count as clamped.
        const A unclamped = act_value<A>(p.act, s, alpha) * gain;
        if (unclamped > clamp || unclamped < -clamp) {
            out[i] = static_cast<T>(A(0));
            return;
        }
    }
    A r;
    if (p.mode == kGrad) {
        r = v * gain * act_deriv1<A>(p.act, s, alpha);
    } else {
        const A dy = static_cast<A>(static_cast<const T*>(p.aux)[i]);
        r = v * dy * gain * act_deriv2<A>(p.act, s, alpha);
    }
    out[i] = static_cast<T>(r);
}

}  // namespace su_bias_act

// Host entry point implemented in bias_act.cu. `dtype` is the c10::ScalarType of
// every tensor in `p` (as int so that this header needs no ATen include);
// `stream` is a cudaStream_t.
void su_bias_act_launch(const su_bias_act::Params& p, int dtype, void* stream);
