// Upsample -> pad/crop -> FIR filter -> downsample for stylegan-unmask.
//
// One output pixel is a short dot product between the filter and the input pixels
// that survive zero-insertion; only taps that land on real input samples are
// visited, so upsampling costs no multiplications by inserted zeros.
// As in bias_act.h the math is __host__ __device__ so it can be verified on a CPU.
//
// Wrapper: torch_utils/ops/upfirdn2d.py (autograd, reference path, plugin spec); built by torch_utils/custom_ops.py.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SU_UFD_HD __host__ __device__ __forceinline__
#else
#define SU_UFD_HD inline
#endif

namespace su_upfirdn2d {

struct Params {
    const void* x = nullptr;  // [N, C, in_h, in_w], any strides
    const void* f = nullptr;  // [filter_h, filter_w] contiguous, in the arithmetic type (see Accum)
    void* y = nullptr;        // [N, C, out_h, out_w], any non-overlapping strides
    int64_t planes = 0;       // N * C
    int64_t channels = 0;     // C
    int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
    int64_t x_stride[4] = {0, 0, 0, 0};  // in elements, order n, c, h, w
    int64_t y_stride[4] = {0, 0, 0, 0};
    int filter_h = 1, filter_w = 1;
    int up_x = 1, up_y = 1, down_x = 1, down_y = 1;
    int pad_x0 = 0, pad_y0 = 0;  // may be negative (crop); the far-side padding only sets out_w/out_h
    // 0: true convolution (the filter is mirrored); 1: correlation (taps used as stored).
    int flip_filter = 0;
};

template <class T> struct Accum { using type = float; };
template <> struct Accum<double> { using type = double; };

// Taps [first, last) with stride `up` whose position start+tap in the upsampled,
// padded axis falls on an input sample: (start + tap) % up == 0 and
// 0 <= (start + tap) / up < in_size.
SU_UFD_HD void tap_range(int64_t start, int64_t up, int64_t in_size, int64_t taps, int64_t* first, int64_t* last) {
    int64_t lo = start < 0 ? -start : 0;
    const int64_t rem = (start + lo) % up;  // start + lo >= 0
    if (rem != 0) lo += up - rem;
    int64_t hi = (in_size - 1) * up - start + 1;
    if (hi > taps) hi = taps;
    *first = lo;
    *last = hi;
}

// Computes y[plane / C, plane % C, oy, ox].
template <class T>
SU_UFD_HD void compute_one(const Params& p, int64_t plane, int64_t oy, int64_t ox) {
    using A = typename Accum<T>::type;
    const int64_t n = plane / p.channels;
    const int64_t c = plane - n * p.channels;
    const T* x = static_cast<const T*>(p.x) + n * p.x_stride[0] + c * p.x_stride[1];
    const A* f = static_cast<const A*>(p.f);

    // Where filter tap 0 sits along each axis of the upsampled, padded input.
    const int64_t start_y = oy * p.down_y - p.pad_y0;
    const int64_t start_x = ox * p.down_x - p.pad_x0;
    int64_t ty0, ty1, tx0, tx1;
    tap_range(start_y, p.up_y, p.in_h, p.filter_h, &ty0, &ty1);
    tap_range(start_x, p.up_x, p.in_w, p.filter_w, &tx0, &tx1);

    // Consecutive valid taps step by `up` and hit consecutive input rows/columns,
    // so the input index is advanced instead of divided inside the loops.
    const int64_t row_first = (start_y + ty0) / p.up_y;
    const int64_t col_first = (start_x + tx0) / p.up_x;
    A acc = A(0);
    int64_t row = row_first;
    for (int64_t ty = ty0; ty < ty1; ty += p.up_y, ++row) {
        const T* xrow = x + row * p.x_stride[2];
        const int64_t fy = p.flip_filter ? ty : p.filter_h - 1 - ty;
        const A* frow = f + fy * p.filter_w;
        int64_t col = col_first;
        for (int64_t tx = tx0; tx < tx1; tx += p.up_x, ++col) {
            const int64_t fx = p.flip_filter ? tx : p.filter_w - 1 - tx;
            acc += frow[fx] * static_cast<A>(xrow[col * p.x_stride[3]]);
        }
    }
    T* y = static_cast<T*>(p.y);
    y[n * p.y_stride[0] + c * p.y_stride[1] + oy * p.y_stride[2] + ox * p.y_stride[3]] = static_cast<T>(acc);
}

}  // namespace su_upfirdn2d

// Host entry point implemented in upfirdn2d.cu; `dtype` is the c10::ScalarType of
// x and y (as int), `stream` a cudaStream_t.
void su_upfirdn2d_launch(const su_upfirdn2d::Params& p, int dtype, void* stream);
