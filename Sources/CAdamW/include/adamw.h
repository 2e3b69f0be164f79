// AdamW's elementwise update in C: Swift's SIMD square root runs lane by lane (a libm call each), which made
// the optimizer compute-bound; clang vectorises this loop (built with -fno-math-errno and no contraction).
#ifndef KEEL_ADAMW_H
#define KEEL_ADAMW_H

#include <stddef.h>

/// For i in [0, count), with g = grads[i] · gradient_scale:
///   m = beta1·m + (1 − beta1)·g;  v = beta2·v + (1 − beta2)·g·g
///   params = params·decay − step_size·m / (√v / root_correction2 + epsilon)
/// each operation rounded to fp32 in this order (no fused multiply-adds), as PyTorch's AdamW computes it.
void keel_adamw_update(float *params, const float *grads, float *m, float *v, size_t count, float beta1, float beta2,
                       float step_size, float root_correction2, float epsilon, float decay, float gradient_scale);

#endif
