// Instance norm + affine + leaky ReLU of a channels-last tensor in one kernel, for CPU inference
// (loaded through ctypes by norm_act.py):
//
//   y[s, p, c] = act((x[s, p, c] - mean[s, c]) * rstd[s, c] * gamma[c] + beta[c])
//
// for samples s, spatial positions p and channels c, mean and variance over p, act(t) = t for t > 0
// else slope * t. torch computes the norm and the activation as separate passes over memory; here a
// sample's statistics are accumulated in one pass (in double) and the second pass reads what the first
// left in cache. Samples are split over threads (parallel.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../parallel.h"

namespace {

template <typename T>
int norm_act(const T* x, const T* gamma, const T* beta, int64_t samples, int64_t positions, int64_t channels,
             double eps, double slope, T* y, int parts) {
    return parallel_parts(0, samples, parts, [&](int64_t first, int64_t last, int) {
        std::vector<double> sum(channels), squares(channels);
        std::vector<T> scale(channels), shift(channels);
        for (int64_t s = first; s < last; ++s) {
            const T* xs = x + s * positions * channels;
            T* ys = y + s * positions * channels;
            std::fill(sum.begin(), sum.end(), 0.0);
            std::fill(squares.begin(), squares.end(), 0.0);
            for (int64_t p = 0; p < positions; ++p) {
                const T* row = xs + p * channels;
                for (int64_t c = 0; c < channels; ++c) {
                    const double v = row[c];
                    sum[c] += v;
                    squares[c] += v * v;
                }
            }
            for (int64_t c = 0; c < channels; ++c) {
                const double mean = sum[c] / positions;
                const double var = std::max(squares[c] / positions - mean * mean, 0.0);
                const double g = (gamma ? gamma[c] : 1.0) / std::sqrt(var + eps);
                scale[c] = static_cast<T>(g);
                shift[c] = static_cast<T>((beta ? beta[c] : 0.0) - mean * g);
            }
            const T a = static_cast<T>(slope);
            for (int64_t p = 0; p < positions; ++p) {
                const T* row = xs + p * channels;
                T* out = ys + p * channels;
                for (int64_t c = 0; c < channels; ++c) {
                    const T t = row[c] * scale[c] + shift[c];
                    out[c] = t > 0 ? t : a * t;
                }
            }
        }
        return 0;
    });
}

}  // namespace

extern "C" {

int hq_norm_act_f32(const float* x, const float* gamma, const float* beta, int64_t samples, int64_t positions,
                    int64_t channels, double eps, double slope, float* y, int parts) {
    return norm_act(x, gamma, beta, samples, positions, channels, eps, slope, y, parts);
}

int hq_norm_act_f64(const double* x, const double* gamma, const double* beta, int64_t samples, int64_t positions,
                    int64_t channels, double eps, double slope, double* y, int parts) {
    return norm_act(x, gamma, beta, samples, positions, channels, eps, slope, y, parts);
}

}  // extern "C"
