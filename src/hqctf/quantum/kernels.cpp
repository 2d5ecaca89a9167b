// Native CPU kernels for the real (RY + CNOT/CZ) circuit path, loaded through ctypes by native.py.
//
// One call simulates a batch of circuits, split over threads by parallel.h. Each circuit's state stays in cache for all
// its layers, so memory traffic is one write of the final state and probabilities (forward) or one
// read of them and of the incoming gradient (backward). Conventions match simulator.py: theta
// (C, L, n), states (C, 2^n), qubit 0 the most significant bit.
//
// Within a layer all rotations commute, so they are applied in the order that suits memory. The last
// LOW qubits act within each contiguous group of 8 amplitudes, held in one vector: their rotations are
// lane shuffles and multiply-adds, fused with the previous layer's entangling permutation, whose
// gather becomes a group load and a constant shuffle. The CNOT ladder (0,1), ..., (n-2,n-1) maps
// basis state x to its prefix parities, i.e. new[j] = old[gray(j)]; the ring's closing CNOT(n-1, 0)
// then flips the top bit of odd j. The CZ ladder or ring is new[j] = sign[j] old[j]. The other
// qubits are rotated in pairs, one pass per pair, each rotation in scaled form: RY = c [[1, -t], [t, 1]]
// with t = s / c when |c| >= |s|, else s [[u, -1], [1, u]] with u = c / s. That is one multiply-add
// per amplitude instead of two; the layer's product of scales is folded into its low-qubit rotations.
//
// Backward (adjoint method): the final state and lam = dLoss/dstate are carried back together; a
// layer's rotation gradients are 0.5 sum(lam_1 psi_0 - lam_0 psi_1) over each qubit's pairs, valid at
// any point of undoing that layer since its rotations commute with each other's generators (sums
// taken on scaled states are divided by the scale squared).

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include "../parallel.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors never cross this file's (inlined) calls
#endif

namespace {

enum Entangler { NONE = 0, CNOT = 1, CZ = 2, CNOT_RING = 3 };

constexpr int LOW = 3;            // qubits applied within groups of
constexpr int GROUP = 1 << LOW;   // 8 contiguous amplitudes (one vector)
constexpr int MIN_FUSED = LOW + 2;  // from here on the ring's flipped group bit is not the parity bit
constexpr int64_t PAD = 80;       // elements between work buffers, against 4K aliasing

template <typename T> struct Lanes;
template <> struct Lanes<float> {
    typedef float V __attribute__((vector_size(GROUP * sizeof(float))));
    typedef int32_t Mask __attribute__((vector_size(GROUP * sizeof(float))));
};
template <> struct Lanes<double> {
    typedef double V __attribute__((vector_size(GROUP * sizeof(double))));
    typedef int64_t Mask __attribute__((vector_size(GROUP * sizeof(double))));
};
template <typename T> using Vec = typename Lanes<T>::V;

// Lane shuffle of (a, b) with constant indices (8 + i picks b[i]).
#if defined(__clang__) || __GNUC__ >= 12
#define HQ_SHUFFLE(T, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define HQ_SHUFFLE(T, a, b, ...) __builtin_shuffle(a, b, typename Lanes<T>::Mask{__VA_ARGS__})
#endif

template <typename T> inline Vec<T> load(const T *p) {
    Vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T> inline void store(T *p, Vec<T> v) { std::memcpy(p, &v, sizeof v); }

template <typename T> inline Vec<T> splat(T x) { return Vec<T>{} + x; }

template <typename T> inline T lane_sum(Vec<T> v, int flip_bit) {  // sum of v[l], negated where l has flip_bit
    T total = 0;
    for (int l = 0; l < GROUP; ++l) total += (l & flip_bit) ? -v[l] : v[l];
    return total;
}

// v[l ^ B]: partner amplitudes of lane bit B.
template <int B, typename T> inline Vec<T> partner(Vec<T> v) {
    if (B == 1) return HQ_SHUFFLE(T, v, v, 1, 0, 3, 2, 5, 4, 7, 6);
    if (B == 2) return HQ_SHUFFLE(T, v, v, 2, 3, 0, 1, 6, 7, 4, 5);
    return HQ_SHUFFLE(T, v, v, 4, 5, 6, 7, 0, 1, 2, 3);
}

inline int64_t gray(int64_t k) { return k ^ (k >> 1); }

inline int64_t gray_inverse(int64_t k) {  // prefix parities
    for (int shift = 1; shift < 64; shift <<= 1) k ^= k >> shift;
    return k;
}

inline int64_t ring_flip(int64_t j, int n) { return j ^ ((j & 1) << (n - 1)); }

constexpr bool permutes(int kind) { return kind == CNOT || kind == CNOT_RING; }

// Group h (parity P) of the entangled state (n >= MIN_FUSED). j = 8h + l reads gray(j) = 8 gray(h) +
// (gray(l) ^ 4P); the ring reads odd l from group h ^ top. `top` is the group index bit of qubit 0.
template <int KIND, int P, typename T>
inline Vec<T> entangled_group(const T *in, const T *sign, int64_t h, int64_t top) {
    if (KIND == CNOT) {
        const Vec<T> a = load(in + GROUP * gray(h));
        return P ? HQ_SHUFFLE(T, a, a, 4, 5, 7, 6, 2, 3, 1, 0) : HQ_SHUFFLE(T, a, a, 0, 1, 3, 2, 6, 7, 5, 4);
    }
    if (KIND == CNOT_RING) {
        const Vec<T> a = load(in + GROUP * gray(h)), b = load(in + GROUP * gray(h ^ top));
        return P ? HQ_SHUFFLE(T, a, b, 4, 13, 7, 14, 2, 11, 1, 8) : HQ_SHUFFLE(T, a, b, 0, 9, 3, 10, 6, 15, 5, 12);
    }
    if (KIND == CZ) return load(in + GROUP * h) * load(sign + GROUP * h);
    return load(in + GROUP * h);
}

// The disentangled state's group gray(k) for permuting kinds (else group k), P = parity of k. It reads
// gray_inverse(j) = 8k + (gray_inverse(l) ^ 7P), the ring taking odd offsets from group k ^ top.
template <int KIND, int P, typename T>
inline Vec<T> disentangled_group(const T *in, const T *sign, int64_t k, int64_t top) {
    if (KIND == CNOT) {
        const Vec<T> a = load(in + GROUP * k);
        return P ? HQ_SHUFFLE(T, a, a, 7, 6, 4, 5, 0, 1, 3, 2) : HQ_SHUFFLE(T, a, a, 0, 1, 3, 2, 7, 6, 4, 5);
    }
    if (KIND == CNOT_RING) {
        const Vec<T> a = load(in + GROUP * k), b = load(in + GROUP * (k ^ top));
        return P ? HQ_SHUFFLE(T, a, b, 15, 6, 4, 13, 0, 9, 11, 2) : HQ_SHUFFLE(T, a, b, 0, 9, 11, 2, 15, 6, 4, 13);
    }
    if (KIND == CZ) return load(in + GROUP * k) * load(sign + GROUP * k);
    return load(in + GROUP * k);
}

// RY (or its transpose) on the last LOW qubits of a group: v = diag[k] v + cross[k] partner(v) per qubit,
// the first one scaled by the layer's product of scales.
template <typename T> struct LowRotations {
    Vec<T> diag[LOW], cross[LOW];

    LowRotations(const T *theta_low, bool transpose, T scale) {
        for (int k = 0; k < LOW; ++k) {
            const T c = std::cos(theta_low[k] / 2), s = std::sin(theta_low[k] / 2), f = k == 0 ? scale : T(1);
            const int bit = GROUP >> (k + 1);
            diag[k] = splat(c * f);
            for (int l = 0; l < GROUP; ++l) cross[k][l] = ((l & bit) != 0) != transpose ? s * f : -s * f;
        }
    }

    inline Vec<T> apply(Vec<T> v) const {
        v = diag[0] * v + cross[0] * partner<4, T>(v);
        v = diag[1] * v + cross[1] * partner<2, T>(v);
        return diag[2] * v + cross[2] * partner<1, T>(v);
    }
};

// One leading-qubit rotation in scaled form: forward, RY / scale is [[1, -k], [k, 1]] (form a) or
// [[k, -1], [1, k]]; its transpose is the same form with -k, and scale -s for the second form.
template <typename T> struct Turn {
    T k, scale;
    bool a;

    Turn() = default;
    Turn(T theta, bool transpose) {
        const T c = std::cos(theta / 2), s = std::sin(theta / 2);
        a = std::fabs(c) >= std::fabs(s);
        k = a ? s / c : c / s;
        scale = a ? c : s;
        if (transpose) {
            k = -k;
            if (!a) scale = -scale;
        }
    }
};

template <bool A, typename T> inline void turn(T x, T y, T k, T &out_x, T &out_y) {
    if (A) {
        out_x = x - k * y;
        out_y = y + k * x;
    } else {
        out_x = k * x - y;
        out_y = x + k * y;
    }
}

// Scaled rotations of qubits q and q + 1 in one pass.
template <bool A0, bool A1, typename T>
void turn_pair(T *psi, int n, int q, T k0, T k1) {
    const int64_t inner = int64_t(1) << (n - 2 - q), dim = int64_t(1) << n;
    for (int64_t base = 0; base < dim; base += 4 * inner) {
        T *a = psi + base, *b = a + inner, *c = b + inner, *d = c + inner;  // bits (q, q+1): 00 01 10 11
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) {
            T x00, x01, x10, x11;
            turn<A1>(a[i], b[i], k1, x00, x01);
            turn<A1>(c[i], d[i], k1, x10, x11);
            turn<A0>(x00, x10, k0, a[i], c[i]);
            turn<A0>(x01, x11, k0, b[i], d[i]);
        }
    }
}

template <bool A, typename T>
void turn_one(T *psi, int n, int q, T k) {
    const int64_t stride = int64_t(1) << (n - 1 - q), dim = int64_t(1) << n;
    for (int64_t base = 0; base < dim; base += 2 * stride) {
        T *a = psi + base, *b = a + stride;
#pragma omp simd
        for (int64_t i = 0; i < stride; ++i) turn<A>(a[i], b[i], k, a[i], b[i]);
    }
}

template <typename T>
void turn_qubits(T *psi, int n, int count, const Turn<T> *t) {
    int q = 0;
    for (; q + 1 < count; q += 2) {
        const T k0 = t[q].k, k1 = t[q + 1].k;
        if (t[q].a) {
            if (t[q + 1].a) turn_pair<true, true>(psi, n, q, k0, k1); else turn_pair<true, false>(psi, n, q, k0, k1);
        } else {
            if (t[q + 1].a) turn_pair<false, true>(psi, n, q, k0, k1); else turn_pair<false, false>(psi, n, q, k0, k1);
        }
    }
    if (q < count) {
        if (t[q].a) turn_one<true>(psi, n, q, t[q].k); else turn_one<false>(psi, n, q, t[q].k);
    }
}

// Gradient sums of qubits q, q + 1 into sums[0..2), and (UNDO) both transposed turns applied to psi and lam.
template <bool UNDO, bool A0, bool A1, typename T>
void unturn_pair(T *psi, T *lam, int n, int q, T k0, T k1, double sums[2]) {
    const int64_t inner = int64_t(1) << (n - 2 - q), dim = int64_t(1) << n;
    for (int64_t base = 0; base < dim; base += 4 * inner) {
        T *a = psi + base, *b = a + inner, *c = b + inner, *d = c + inner;
        T *e = lam + base, *f = e + inner, *g = f + inner, *h = g + inner;
        T acc0 = 0, acc1 = 0;
#pragma omp simd reduction(+ : acc0, acc1)
        for (int64_t i = 0; i < inner; ++i) {
            const T x00 = a[i], x01 = b[i], x10 = c[i], x11 = d[i];
            const T y00 = e[i], y01 = f[i], y10 = g[i], y11 = h[i];
            acc0 += y10 * x00 - y00 * x10 + y11 * x01 - y01 * x11;
            acc1 += y01 * x00 - y00 * x01 + y11 * x10 - y10 * x11;
            if (UNDO) {
                T p00, p01, p10, p11;
                turn<A1>(x00, x01, k1, p00, p01);
                turn<A1>(x10, x11, k1, p10, p11);
                turn<A0>(p00, p10, k0, a[i], c[i]);
                turn<A0>(p01, p11, k0, b[i], d[i]);
                turn<A1>(y00, y01, k1, p00, p01);
                turn<A1>(y10, y11, k1, p10, p11);
                turn<A0>(p00, p10, k0, e[i], g[i]);
                turn<A0>(p01, p11, k0, f[i], h[i]);
            }
        }
        sums[0] += acc0;
        sums[1] += acc1;
    }
}

template <bool UNDO, bool A, typename T>
double unturn_one(T *psi, T *lam, int n, int q, T k) {
    const int64_t stride = int64_t(1) << (n - 1 - q), dim = int64_t(1) << n;
    double total = 0.0;
    for (int64_t base = 0; base < dim; base += 2 * stride) {
        T *a = psi + base, *b = a + stride, *u = lam + base, *v = u + stride;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < stride; ++i) {
            const T x = a[i], y = b[i], g = u[i], h = v[i];
            acc += h * x - g * y;
            if (UNDO) {
                turn<A>(x, y, k, a[i], b[i]);
                turn<A>(g, h, k, u[i], v[i]);
            }
        }
        total += acc;
    }
    return total;
}

// Gradient sums of qubits [0, count) into twice, and (UNDO) their transposed turns applied. psi and lam
// enter scaled by `scale` (the product of the turns' scales when UNDO, else 1); each sum is divided by
// the square of the scale the states carry when it is taken.
template <bool UNDO, typename T>
void unturn_qubits(T *psi, T *lam, int n, int count, const Turn<T> *t, double scale, double *twice) {
    int q = 0;
    for (; q + 1 < count; q += 2) {
        double sums[2] = {0.0, 0.0};
        const T k0 = t[q].k, k1 = t[q + 1].k;
        if (t[q].a) {
            if (t[q + 1].a) unturn_pair<UNDO, true, true>(psi, lam, n, q, k0, k1, sums);
            else unturn_pair<UNDO, true, false>(psi, lam, n, q, k0, k1, sums);
        } else {
            if (t[q + 1].a) unturn_pair<UNDO, false, true>(psi, lam, n, q, k0, k1, sums);
            else unturn_pair<UNDO, false, false>(psi, lam, n, q, k0, k1, sums);
        }
        twice[q] += sums[0] / (scale * scale);
        twice[q + 1] += sums[1] / (scale * scale);
        if (UNDO) scale /= double(t[q].scale) * double(t[q + 1].scale);
    }
    if (q < count) {
        const double sum = t[q].a ? unturn_one<UNDO, true>(psi, lam, n, q, t[q].k)
                                  : unturn_one<UNDO, false>(psi, lam, n, q, t[q].k);
        twice[q] += sum / (scale * scale);
    }
}

// Product of the scales of turns [0, count).
template <typename T> T scale_of(const Turn<T> *t, int count) {
    T scale = 1;
    for (int q = 0; q < count; ++q) scale *= t[q].scale;
    return scale;
}

// Entangling layer (or its inverse) on all of psi, into out; returns the buffer holding the result.
template <typename T>
T *entangle(T *__restrict__ psi, T *__restrict__ out, int n, int kind, bool inverse, const T *sign) {
    const int64_t dim = int64_t(1) << n;
    if (kind == CZ) {
#pragma omp simd
        for (int64_t j = 0; j < dim; ++j) psi[j] *= sign[j];
        return psi;
    }
    if (kind == NONE) return psi;
    const bool ring = kind == CNOT_RING;
    for (int64_t j = 0; j < dim; ++j) {
        const int64_t from = inverse ? (ring ? ring_flip(gray_inverse(j), n) : gray_inverse(j))
                                     : gray(ring ? ring_flip(j, n) : j);
        out[j] = psi[from];
    }
    return out;
}

template <typename T> void scale_state(T *psi, int64_t dim, T scale) {
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) psi[j] *= scale;
}

// The first layer's rotations act on |0...0>, giving the product state of the (cos, sin) columns.
template <typename T>
void product_state(T *psi, int n, const T *theta) {
    psi[0] = 1;
    for (int q = 0; q < n; ++q) {
        const T c = std::cos(theta[q] / 2), s = std::sin(theta[q] / 2);
        for (int64_t i = (int64_t(1) << q) - 1; i >= 0; --i) {
            psi[2 * i + 1] = psi[i] * s;
            psi[2 * i] = psi[i] * c;
        }
    }
}

// Fused forward step: out = low rotations of the entangled in (n >= MIN_FUSED).
template <int KIND, typename T>
void entangle_low(const T *__restrict__ in, T *__restrict__ out, int n, const T *sign, const LowRotations<T> &low) {
    const int64_t groups = int64_t(1) << (n - LOW), top = groups >> 1;
    for (int64_t h = 0; h < groups; h += 2) {
        store(out + GROUP * h, low.apply(entangled_group<KIND, 0>(in, sign, h, top)));
        store(out + GROUP * (h + 1), low.apply(entangled_group<KIND, 1>(in, sign, h + 1, top)));
    }
}

// Last forward step: the final entangling layer, written to states with the probabilities.
template <int KIND, typename T>
void entangle_final(const T *__restrict__ in, T *__restrict__ states, T *__restrict__ probs, int n, const T *sign) {
    const int64_t groups = int64_t(1) << (n - LOW), top = groups >> 1;
    for (int64_t h = 0; h < groups; h += 2) {
        const Vec<T> v0 = entangled_group<KIND, 0>(in, sign, h, top), v1 = entangled_group<KIND, 1>(in, sign, h + 1, top);
        store(states + GROUP * h, v0);
        store(states + GROUP * (h + 1), v1);
        store(probs + GROUP * h, v0 * v0);
        store(probs + GROUP * (h + 1), v1 * v1);
    }
}

// Fused backward step (n >= MIN_FUSED): the inverse entangling layer on psi and lam (SEED: lam is
// 2 grad_probs * psi, read from the grad_probs in `lam`), the low-qubit gradient sums added to
// twice[0..LOW), and (UNDO) the low rotations undone.
template <int KIND, bool SEED, bool UNDO, typename T>
void disentangle_low(const T *__restrict__ psi, const T *__restrict__ lam, T *__restrict__ psi_out,
                     T *__restrict__ lam_out, int n, const T *sign, const LowRotations<T> &low, double twice[LOW]) {
    const int64_t groups = int64_t(1) << (n - LOW), top = groups >> 1;
    Vec<T> acc[LOW] = {};
    auto step = [&](auto parity, int64_t k) {
        constexpr int P = decltype(parity)::value;
        Vec<T> x = disentangled_group<KIND, P>(psi, sign, k, top), y = disentangled_group<KIND, P>(lam, sign, k, top);
        if (SEED) y = T(2) * y * (KIND == CZ ? load(psi + GROUP * k) : x);
        acc[0] += partner<4, T>(y) * x;
        acc[1] += partner<2, T>(y) * x;
        acc[2] += partner<1, T>(y) * x;
        if (UNDO) {
            x = low.apply(x);
            y = low.apply(y);
        }
        const int64_t h = permutes(KIND) ? gray(k) : k;
        store(psi_out + GROUP * h, x);
        store(lam_out + GROUP * h, y);
    };
    for (int64_t k = 0; k < groups; k += 2) {
        step(std::integral_constant<int, 0>(), k);
        step(std::integral_constant<int, 1>(), k + 1);
    }
    for (int k = 0; k < LOW; ++k) twice[k] += lane_sum<T>(acc[k], GROUP >> (k + 1));
}

template <typename T>
int forward(const T *theta, int64_t first, int64_t last, int L, int n, int kind, const T *sign, T *states,
            T *probs) {
    const int64_t dim = int64_t(1) << n;
    T *buffer = static_cast<T *>(std::malloc(sizeof(T) * (dim + PAD)));
    if (!buffer) return 1;
    const bool fused = n >= MIN_FUSED;
    const int lead = fused ? n - LOW : n;
    Turn<T> turns[64];
    for (int64_t c = first; c < last; ++c) {
        const T *th = theta + c * L * n;
        T *home = states + c * dim, *psi = home, *spare = buffer + PAD;
        if (fused && L % 2 == 1) std::swap(psi, spare);  // so the final entangle reads the spare, writes home
        product_state(psi, n, th);
        for (int l = 1; l < L; ++l) {
            const T *tl = th + l * n;
            for (int q = 0; q < lead; ++q) turns[q] = Turn<T>(tl[q], false);
            const T scale = scale_of(turns, lead);
            if (fused) {
                const LowRotations<T> low(tl + lead, false, scale);
                switch (kind) {
                    case CNOT: entangle_low<CNOT>(psi, spare, n, sign, low); break;
                    case CNOT_RING: entangle_low<CNOT_RING>(psi, spare, n, sign, low); break;
                    case CZ: entangle_low<CZ>(psi, spare, n, sign, low); break;
                    default: entangle_low<NONE>(psi, spare, n, sign, low);
                }
                std::swap(psi, spare);
            } else {
                if (entangle(psi, spare, n, kind, false, sign) != psi) std::swap(psi, spare);
                scale_state(psi, dim, scale);
            }
            turn_qubits(psi, n, lead, turns);
        }
        T *p = probs + c * dim;
        if (fused) {
            switch (kind) {
                case CNOT: entangle_final<CNOT>(psi, home, p, n, sign); break;
                case CNOT_RING: entangle_final<CNOT_RING>(psi, home, p, n, sign); break;
                case CZ: entangle_final<CZ>(psi, home, p, n, sign); break;
                default: entangle_final<NONE>(psi, home, p, n, sign);
            }
        } else {
            if (entangle(psi, spare, n, kind, false, sign) != psi) std::swap(psi, spare);
            if (psi != home) std::memcpy(home, psi, sizeof(T) * dim);
#pragma omp simd
            for (int64_t j = 0; j < dim; ++j) p[j] = home[j] * home[j];
        }
    }
    std::free(buffer);
    return 0;
}

template <bool SEED, bool UNDO, typename T>
void disentangle_low_any(const T *psi, const T *lam, T *psi_out, T *lam_out, int n, int kind, const T *sign,
                         const LowRotations<T> &low, double twice[LOW]) {
    switch (kind) {
        case CNOT: disentangle_low<CNOT, SEED, UNDO>(psi, lam, psi_out, lam_out, n, sign, low, twice); break;
        case CNOT_RING: disentangle_low<CNOT_RING, SEED, UNDO>(psi, lam, psi_out, lam_out, n, sign, low, twice); break;
        case CZ: disentangle_low<CZ, SEED, UNDO>(psi, lam, psi_out, lam_out, n, sign, low, twice); break;
        default: disentangle_low<NONE, SEED, UNDO>(psi, lam, psi_out, lam_out, n, sign, low, twice);
    }
}

// One layer of the backward: psi and lam hold the state and adjoint after the layer (SEED, fused path
// only: the final state and grad_probs, read in place); results land in the spares, which trade roles.
template <bool SEED, bool UNDO, typename T>
void backward_layer(T *&psi, T *&lam, T *&psi_spare, T *&lam_spare, int n, int kind, const T *sign, const T *th,
                    T *grad) {
    double twice[64] = {};
    Turn<T> turns[64];
    const int64_t dim = int64_t(1) << n;
    const int lead = n >= MIN_FUSED ? n - LOW : n;
    for (int q = 0; q < lead; ++q) turns[q] = Turn<T>(th[q], true);
    const T scale = UNDO ? scale_of(turns, lead) : T(1);
    if (n >= MIN_FUSED) {
        const LowRotations<T> low(th + lead, true, scale);
        disentangle_low_any<SEED, UNDO>(psi, lam, psi_spare, lam_spare, n, kind, sign, low, twice + lead);
        std::swap(psi, psi_spare);
        std::swap(lam, lam_spare);
    } else {
        if (entangle(psi, psi_spare, n, kind, true, sign) != psi) std::swap(psi, psi_spare);
        if (entangle(lam, lam_spare, n, kind, true, sign) != lam) std::swap(lam, lam_spare);
        if (UNDO) {
            scale_state(psi, dim, scale);
            scale_state(lam, dim, scale);
        }
    }
    unturn_qubits<UNDO>(psi, lam, n, lead, turns, double(scale), twice);
    for (int q = 0; q < n; ++q) grad[q] = T(0.5 * twice[q]);
}

template <typename T>
int backward(const T *theta, int64_t first, int64_t last, int L, int n, int kind, const T *sign,
             const T *states, const T *grad_probs, T *grad_theta) {
    const int64_t dim = int64_t(1) << n;
    T *work = static_cast<T *>(std::malloc(sizeof(T) * 4 * (dim + PAD)));
    if (!work) return 1;
    for (int64_t c = first; c < last; ++c) {
        const T *th = theta + c * L * n;
        T *grad = grad_theta + c * L * n;
        T *psi = const_cast<T *>(states + c * dim), *lam = const_cast<T *>(grad_probs + c * dim);
        T *psi_spare = work + PAD, *lam_spare = psi_spare + dim + PAD;
        T *psi_next = lam_spare + dim + PAD, *lam_next = psi_next + dim + PAD;
        int l = L - 1;
        if (n >= MIN_FUSED) {  // the seeding layer reads states and grad_probs in place
            if (L == 1) {
                backward_layer<true, false>(psi, lam, psi_spare, lam_spare, n, kind, sign, th, grad);
                continue;
            }
            backward_layer<true, true>(psi, lam, psi_spare, lam_spare, n, kind, sign, th + l * n, grad + l * n);
            --l;
        } else {
            for (int64_t j = 0; j < dim; ++j) {
                psi_spare[j] = psi[j];
                lam_spare[j] = 2 * lam[j] * psi[j];
            }
            psi = psi_spare;
            lam = lam_spare;
        }
        psi_spare = psi_next;
        lam_spare = lam_next;
        for (; l > 0; --l)
            backward_layer<false, true>(psi, lam, psi_spare, lam_spare, n, kind, sign, th + l * n, grad + l * n);
        backward_layer<false, false>(psi, lam, psi_spare, lam_spare, n, kind, sign, th, grad);
    }
    std::free(work);
    return 0;
}

}  // namespace

extern "C" {

int hq_forward_f32(const float *theta, int64_t C, int L, int n, int kind, const float *sign, float *states,
                   float *probs, int threads) {
    return parallel_parts(0, C, threads, [&](int64_t a, int64_t b, int) {
        return forward(theta, a, b, L, n, kind, sign, states, probs);
    });
}

int hq_forward_f64(const double *theta, int64_t C, int L, int n, int kind, const double *sign, double *states,
                   double *probs, int threads) {
    return parallel_parts(0, C, threads, [&](int64_t a, int64_t b, int) {
        return forward(theta, a, b, L, n, kind, sign, states, probs);
    });
}

int hq_backward_f32(const float *theta, int64_t C, int L, int n, int kind, const float *sign, const float *states,
                    const float *grad_probs, float *grad_theta, int threads) {
    return parallel_parts(0, C, threads, [&](int64_t a, int64_t b, int) {
        return backward(theta, a, b, L, n, kind, sign, states, grad_probs, grad_theta);
    });
}

int hq_backward_f64(const double *theta, int64_t C, int L, int n, int kind, const double *sign,
                    const double *states, const double *grad_probs, double *grad_theta, int threads) {
    return parallel_parts(0, C, threads, [&](int64_t a, int64_t b, int) {
        return backward(theta, a, b, L, n, kind, sign, states, grad_probs, grad_theta);
    });
}

}  // extern "C"
