#include "adamw.h"

void keel_adamw_update(float *restrict params, const float *restrict grads, float *restrict m, float *restrict v,
                       size_t count, float beta1, float beta2, float step_size, float root_correction2, float epsilon,
                       float decay, float gradient_scale) {
    for (size_t i = 0; i < count; i++) {
        float g = grads[i] * gradient_scale;
        float mi = beta1 * m[i] + (1 - beta1) * g;
        float vi = beta2 * v[i] + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float denominator = __builtin_sqrtf(vi) / root_correction2 + epsilon;
        params[i] = params[i] * decay - step_size * mi / denominator;
    }
}
