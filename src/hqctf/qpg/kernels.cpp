// Native CPU kernels of the QPG mapping network with one hidden layer, loaded through ctypes by native.py:
//
//   out[c, s, k] = b[k] + sum_j w[k, j] act(a[s, j] + q[c, s] p[j])
//
// for channels c, basis states s, hidden units j and outputs k, act = tanh or identity. The
// (channels, states, hidden) activations are never stored: forward computes them block by block
// in cache, backward recomputes them. Each part (parallel.h) handles a range of states of every
// channel, so threads own disjoint columns of the state-indexed outputs; the sums over states
// (gradients of p, w, b) go to per-part partial rows that the caller adds up. a is passed transposed, a_t (H, S).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "../parallel.h"

namespace {

constexpr int64_t BLOCK = 64;  // states per block: a_t's block (H x 64) stays in L1 across channels

enum Activation { IDENTITY = 0, TANH = 1 };

// tanh in float: odd Taylor series up to x^15 below 0.55, else (1 - e) / (1 + e) with e = exp(-2|x|)
// from a degree-7 polynomial on the reduced argument; under 3e-7 relative error (tested). Branch-free, so the loops
// calling it vectorise (with -fno-trapping-math, which lets the compiler compute both sides of a select).
inline float tanh_approx(float x) {
    const float a = std::min(std::fabs(x), 9.0f);
    const float a2 = a * a;
    float series = -929569.0f / 638512875.0f;
    series = series * a2 + 21844.0f / 6081075.0f;
    series = series * a2 - 1382.0f / 155925.0f;
    series = series * a2 + 62.0f / 2835.0f;
    series = series * a2 - 17.0f / 315.0f;
    series = series * a2 + 2.0f / 15.0f;
    series = series * a2 - 1.0f / 3.0f;
    series = (series * a2 + 1.0f) * a;
    const float y = -2.0f * a;  // exp(y) = 2^k exp(r), |r| <= ln2 / 2, 2^k built in the exponent bits
    const float k = std::floor(y * 1.44269504088896341f + 0.5f);
    const float r = (y - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float e = 1.0f / 5040.0f;
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale;
    scale.i = (static_cast<int32_t>(k) + 127) << 23;
    e *= scale.f;
    const float tail = (1.0f - e) / (1.0f + e);  // computed unconditionally: a select, not a branch
    const float t = a < 0.55f ? series : tail;
    return x < 0 ? -t : t;
}
template <int ACT, typename T>
inline T activate(T h);

template <>
inline float activate<TANH, float>(float h) { return tanh_approx(h); }
template <>
inline double activate<TANH, double>(double h) { return std::tanh(h); }
template <>
inline float activate<IDENTITY, float>(float h) { return h; }
template <>
inline double activate<IDENTITY, double>(double h) { return h; }

template <int ACT, typename T>
int map_forward(int64_t s0, int64_t s1, const T *q, const T *a_t, const T *p, const T *w, const T *b, int64_t C,
                int64_t S, int H, int K, T *out) {
    T *acc = static_cast<T *>(std::malloc(sizeof(T) * K * BLOCK));
    if (!acc) return 1;
    T t[BLOCK];
    for (int64_t start = s0; start < s1; start += BLOCK) {
        const int64_t m = std::min(BLOCK, s1 - start);
        for (int64_t c = 0; c < C; ++c) {
            const T *qc = q + c * S + start;
            for (int k = 0; k < K; ++k)
                for (int64_t i = 0; i < m; ++i) acc[k * BLOCK + i] = b[k];
            for (int j = 0; j < H; ++j) {
                const T pj = p[j], *aj = a_t + j * S + start;
#pragma omp simd
                for (int64_t i = 0; i < m; ++i) t[i] = activate<ACT>(aj[i] + qc[i] * pj);
                for (int k = 0; k < K; ++k) {
                    const T wkj = w[k * H + j];
                    T *ak = acc + k * BLOCK;
#pragma omp simd
                    for (int64_t i = 0; i < m; ++i) ak[i] += wkj * t[i];
                }
            }
            T *oc = out + (c * S + start) * K;
            for (int64_t i = 0; i < m; ++i)
                for (int k = 0; k < K; ++k) oc[i * K + k] = acc[k * BLOCK + i];
        }
    }
    std::free(acc);
    return 0;
}

// Gradients for states [s0, s1): dq (C, S) and da_t (H, S) in those columns; this call's sums over
// its states of dp (H), dw (K, H) and db (K) into the partial rows p_part, w_part, b_part.
template <int ACT, typename T>
int map_backward(int64_t s0, int64_t s1, const T *q, const T *a_t, const T *p, const T *w, const T *g, int64_t C,
                 int64_t S, int H, int K, T *dq, T *da_t, T *p_part, T *w_part, T *b_part) {
    T *gk = static_cast<T *>(std::malloc(sizeof(T) * K * BLOCK));
    double *sums = static_cast<double *>(std::calloc(H + K * H + K, sizeof(double)));
    if (!gk || !sums) {
        std::free(gk);
        std::free(sums);
        return 1;
    }
    double *dp = sums, *dw = sums + H, *db = sums + H + K * H;
    T t[BLOCK], dh[BLOCK], dqc[BLOCK];
    for (int64_t start = s0; start < s1; start += BLOCK) {
        const int64_t m = std::min(BLOCK, s1 - start);
        for (int64_t c = 0; c < C; ++c) {
            const T *qc = q + c * S + start, *gc = g + (c * S + start) * K;
            for (int64_t i = 0; i < m; ++i)
                for (int k = 0; k < K; ++k) gk[k * BLOCK + i] = gc[i * K + k];
            for (int k = 0; k < K; ++k) {
                T total = 0;
#pragma omp simd reduction(+ : total)
                for (int64_t i = 0; i < m; ++i) total += gk[k * BLOCK + i];
                db[k] += total;
            }
            for (int64_t i = 0; i < m; ++i) dqc[i] = 0;
            for (int j = 0; j < H; ++j) {
                const T pj = p[j], *aj = a_t + j * S + start;
#pragma omp simd
                for (int64_t i = 0; i < m; ++i) {
                    t[i] = activate<ACT>(aj[i] + qc[i] * pj);
                    dh[i] = 0;
                }
                for (int k = 0; k < K; ++k) {
                    const T wkj = w[k * H + j], *gkk = gk + k * BLOCK;
                    T total = 0;
#pragma omp simd reduction(+ : total)
                    for (int64_t i = 0; i < m; ++i) {
                        total += gkk[i] * t[i];
                        dh[i] += gkk[i] * wkj;
                    }
                    dw[k * H + j] += total;
                }
                T *daj = da_t + j * S + start;
                T total = 0;
#pragma omp simd reduction(+ : total)
                for (int64_t i = 0; i < m; ++i) {
                    const T d = ACT == TANH ? dh[i] * (1 - t[i] * t[i]) : dh[i];
                    daj[i] += d;
                    total += d * qc[i];
                    dqc[i] += d * pj;
                }
                dp[j] += total;
            }
            T *dq_c = dq + c * S + start;
            for (int64_t i = 0; i < m; ++i) dq_c[i] = dqc[i];
        }
    }
    for (int j = 0; j < H; ++j) p_part[j] = T(dp[j]);
    for (int i = 0; i < K * H; ++i) w_part[i] = T(dw[i]);
    for (int k = 0; k < K; ++k) b_part[k] = T(db[k]);
    std::free(gk);
    std::free(sums);
    return 0;
}

template <typename T>
int forward(int64_t s0, int64_t s1, const T *q, const T *a_t, const T *p, const T *w, const T *b, int64_t C,
            int64_t S, int H, int K, int act, T *out) {
    return act == TANH ? map_forward<TANH>(s0, s1, q, a_t, p, w, b, C, S, H, K, out)
                       : map_forward<IDENTITY>(s0, s1, q, a_t, p, w, b, C, S, H, K, out);
}

template <typename T>
int backward(int64_t s0, int64_t s1, const T *q, const T *a_t, const T *p, const T *w, const T *g, int64_t C,
             int64_t S, int H, int K, int act, T *dq, T *da_t, T *p_part, T *w_part, T *b_part) {
    return act == TANH ? map_backward<TANH>(s0, s1, q, a_t, p, w, g, C, S, H, K, dq, da_t, p_part, w_part, b_part)
                       : map_backward<IDENTITY>(s0, s1, q, a_t, p, w, g, C, S, H, K, dq, da_t, p_part, w_part, b_part);
}

}  // namespace

extern "C" {

int hq_map_forward_f32(const float *q, const float *a_t, const float *p, const float *w, const float *b, int64_t C,
                       int64_t S, int H, int K, int act, float *out, int parts) {
    return parallel_parts(0, S, parts, [&](int64_t s0, int64_t s1, int) {
        return forward(s0, s1, q, a_t, p, w, b, C, S, H, K, act, out);
    });
}

int hq_map_forward_f64(const double *q, const double *a_t, const double *p, const double *w, const double *b,
                       int64_t C, int64_t S, int H, int K, int act, double *out, int parts) {
    return parallel_parts(0, S, parts, [&](int64_t s0, int64_t s1, int) {
        return forward(s0, s1, q, a_t, p, w, b, C, S, H, K, act, out);
    });
}

int hq_map_backward_f32(const float *q, const float *a_t, const float *p, const float *w, const float *g, int64_t C,
                        int64_t S, int H, int K, int act, float *dq, float *da_t, float *p_part, float *w_part,
                        float *b_part, int parts) {
    return parallel_parts(0, S, parts, [&](int64_t s0, int64_t s1, int i) {
        return backward(s0, s1, q, a_t, p, w, g, C, S, H, K, act, dq, da_t, p_part + i * H, w_part + i * K * H,
                        b_part + i * K);
    });
}

int hq_map_backward_f64(const double *q, const double *a_t, const double *p, const double *w, const double *g,
                        int64_t C, int64_t S, int H, int K, int act, double *dq, double *da_t, double *p_part,
                        double *w_part, double *b_part, int parts) {
    return parallel_parts(0, S, parts, [&](int64_t s0, int64_t s1, int i) {
        return backward(s0, s1, q, a_t, p, w, g, C, S, H, K, act, dq, da_t, p_part + i * H, w_part + i * K * H,
                        b_part + i * K);
    });
}

}  // extern "C"
