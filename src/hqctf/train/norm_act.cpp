// Instance norm + affine + leaky ReLU of a channels-last tensor in one kernel, for CPU inference
// (loaded through ctypes by norm_act.py):
//
//   y[s, p, c] = act((x[s, p, c] - mean[s, c]) * rstd[s, c] * gamma[c] + beta[c])
//
// for samples s, spatial positions p and channels c, mean and variance over p, act(t) = t for t > 0
// else slope * t. torch computes the norm and the activation as separate passes over memory; here a
// sample's statistics are accumulated in one pass (blocks of positions in T, their sums in double) and the
// second pass reads what the first left in cache. Samples are split over threads (parallel.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "../parallel.h"

namespace {

constexpr int64_t BLOCK = 256;  // positions summed in T before adding into the double accumulators

// Per-channel sum and sum of squares of d = x - x[0] over `positions` rows of `channels` values (shifted by the
// first row, so a large mean does not cancel the variance): in T over blocks of positions (restrict pointers, so
// the channel loop vectorises), each block's partial sums added in double.
template <typename T>
void moments(const T* __restrict x, int64_t positions, int64_t channels, T* __restrict part_sum,
             T* __restrict part_squares, double* __restrict sum, double* __restrict squares) {
    std::fill(sum, sum + channels, 0.0);
    std::fill(squares, squares + channels, 0.0);
    for (int64_t start = 0; start < positions; start += BLOCK) {
        std::fill(part_sum, part_sum + channels, T(0));
        std::fill(part_squares, part_squares + channels, T(0));
        const int64_t stop = std::min(positions, start + BLOCK);
        for (int64_t p = start; p < stop; ++p) {
            const T* __restrict row = x + p * channels;
            for (int64_t c = 0; c < channels; ++c) {
                const T d = row[c] - x[c];
                part_sum[c] += d;
                part_squares[c] += d * d;
            }
        }
        for (int64_t c = 0; c < channels; ++c) {
            sum[c] += part_sum[c];
            squares[c] += part_squares[c];
        }
    }
}

template <typename T>
void scale_shift_act(const T* __restrict x, int64_t positions, int64_t channels, const T* __restrict scale,
                     const T* __restrict shift, T slope, T* __restrict y) {
    for (int64_t p = 0; p < positions; ++p) {
        const T* __restrict row = x + p * channels;
        T* __restrict out = y + p * channels;
        for (int64_t c = 0; c < channels; ++c) {
            const T t = row[c] * scale[c] + shift[c];
            out[c] = t > 0 ? t : slope * t;
        }
    }
}

template <typename T>
int norm_act(const T* x, const T* gamma, const T* beta, int64_t samples, int64_t positions, int64_t channels,
             double eps, double slope, T* y, int parts) {
    return parallel_parts(0, samples, parts, [&](int64_t first, int64_t last, int) {
        // work buffers: sum, squares (double); part_sum, part_squares, scale, shift (T); a failure returns 1
        double* sum = static_cast<double*>(std::malloc(sizeof(double) * 2 * channels));
        T* part_sum = static_cast<T*>(std::malloc(sizeof(T) * 4 * channels));
        if (!sum || !part_sum) {
            std::free(sum);
            std::free(part_sum);
            return 1;
        }
        double* squares = sum + channels;
        T *part_squares = part_sum + channels, *scale = part_sum + 2 * channels, *shift = part_sum + 3 * channels;
        for (int64_t s = first; s < last; ++s) {
            const T* xs = x + s * positions * channels;
            moments(xs, positions, channels, part_sum, part_squares, sum, squares);
            for (int64_t c = 0; c < channels; ++c) {
                const double shifted = sum[c] / positions, mean = xs[c] + shifted;
                const double var = std::max(squares[c] / positions - shifted * shifted, 0.0);
                const double g = (gamma ? gamma[c] : 1.0) / std::sqrt(var + eps);
                scale[c] = static_cast<T>(g);
                shift[c] = static_cast<T>((beta ? beta[c] : 0.0) - mean * g);
            }
            scale_shift_act(xs, positions, channels, scale, shift, static_cast<T>(slope), y + s * positions * channels);
        }
        std::free(sum);
        std::free(part_sum);
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
