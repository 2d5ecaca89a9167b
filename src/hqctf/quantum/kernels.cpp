// Native CPU kernels for the real (RY + CNOT/CZ) circuit path, loaded through ctypes by native.py.
//
// One call simulates circuits [first, last) of a batch. Each circuit's state stays in cache for all
// its layers, so memory traffic is one write of the final state and probabilities (forward) or one
// read of them and of the incoming gradient (backward). Conventions match simulator.py: theta
// (C, L, n), states (C, 2^n), qubit 0 the most significant bit.
//
// Within a layer all rotations commute, so they are applied in the order that suits memory: the last
// LOW qubits as one 8x8 matrix on each contiguous group of 8 amplitudes, fused with the previous
// layer's entangling permutation (its gather feeds the matrix), then the other qubits in pairs,
// one pass per pair. The CNOT ladder (0,1), ..., (n-2,n-1) maps basis state x to its prefix
// parities, i.e. new[j] = old[gray(j)]; the ring's closing CNOT(n-1, 0) then flips the top bit of
// odd j. The CZ ladder or ring is new[j] = sign[j] old[j].
//
// Backward (adjoint method): the final state and lam = dLoss/dstate are carried back together; a
// layer's rotation gradients are 0.5 sum(lam_1 psi_0 - lam_0 psi_1) over each qubit's pairs, valid at
// any point of undoing that layer since its rotations commute with each other's generators.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace {

enum Entangler { NONE = 0, CNOT = 1, CZ = 2, CNOT_RING = 3 };

constexpr int LOW = 3;           // qubits applied as one matrix within groups of
constexpr int GROUP = 1 << LOW;  // 8 contiguous amplitudes
constexpr int64_t PAD = 80;      // elements between work buffers, against 4K aliasing

inline int64_t gray(int64_t k) { return k ^ (k >> 1); }

inline int64_t gray_inverse(int64_t k) {  // prefix parities
    for (int shift = 1; shift < 64; shift <<= 1) k ^= k >> shift;
    return k;
}

inline int64_t ring_flip(int64_t j, int n) { return j ^ ((j & 1) << (n - 1)); }

// Where group h of the entangled (or, inverse, disentangled) state reads its 8 amplitudes from (n > LOW).
// Forward, j = 8h + l: gray(j) = 8 gray(h) + (gray(l) ^ (h odd ? 4 : 0)), with the ring flipping h's
// top bit for odd l. Inverse: gray_inverse(j) = 8 gray_inverse(h) + (gray_inverse(l) ^ (parity(h) ? 7 : 0)),
// the ring flipping the top bit when the result is odd.
struct GroupSource {
    int kind;
    bool inverse;
    int64_t top;  // top bit of a group index (qubit 0)
    int64_t offset[2][GROUP];

    GroupSource(int n, int kind_, bool inverse_) : kind(kind_), inverse(inverse_), top(int64_t(1) << (n - 1 - LOW)) {
        for (int p = 0; p < 2; ++p)
            for (int l = 0; l < GROUP; ++l)
                offset[p][l] = inverse ? gray_inverse(l) ^ (p ? GROUP - 1 : 0) : gray(l) ^ (p ? GROUP / 2 : 0);
    }

    inline void fill(int64_t h, int64_t index[GROUP]) const {
        if (kind != CNOT && kind != CNOT_RING) {
            for (int l = 0; l < GROUP; ++l) index[l] = h * GROUP + l;
        } else if (!inverse) {
            const int64_t h_odd = kind == CNOT_RING ? h ^ top : h;
            for (int l = 0; l < GROUP; ++l) {
                const int64_t hh = (l & 1) ? h_odd : h;
                index[l] = gray(hh) * GROUP + offset[hh & 1][l];
            }
        } else {
            const int64_t gh = gray_inverse(h), flip = kind == CNOT_RING ? top * GROUP : 0;
            for (int l = 0; l < GROUP; ++l) {
                const int64_t x = offset[gh & 1][l];
                index[l] = (gh * GROUP + x) ^ ((x & 1) ? flip : 0);
            }
        }
    }
};

// cols[j][i] = <i| RY(t0) x RY(t1) x RY(t2) |j> for the last LOW qubits, or of its transpose.
template <typename T>
inline void low_block(const T *theta_low, bool transpose, T cols[GROUP][GROUP]) {
    T c[LOW], s[LOW];
    for (int k = 0; k < LOW; ++k) {
        c[k] = std::cos(theta_low[k] / 2);
        s[k] = std::sin(theta_low[k] / 2);
    }
    for (int i = 0; i < GROUP; ++i)
        for (int j = 0; j < GROUP; ++j) {
            T m = 1;
            for (int k = 0; k < LOW; ++k) {
                const int bi = (i >> (LOW - 1 - k)) & 1, bj = (j >> (LOW - 1 - k)) & 1;
                m *= bi == bj ? c[k] : (bi ? s[k] : -s[k]);  // RY = [[c, -s], [s, c]]
            }
            if (transpose) cols[i][j] = m; else cols[j][i] = m;
        }
}

// out = M v with M given by its columns; four independent partial sums keep the FMA chains short.
template <typename T>
inline void matvec(const T cols[GROUP][GROUP], const T v[GROUP], T *__restrict__ out) {
    T p[4][GROUP];
    for (int k = 0; k < 4; ++k)
#pragma omp simd
        for (int i = 0; i < GROUP; ++i) p[k][i] = cols[2 * k][i] * v[2 * k] + cols[2 * k + 1][i] * v[2 * k + 1];
#pragma omp simd
    for (int i = 0; i < GROUP; ++i) out[i] = (p[0][i] + p[1][i]) + (p[2][i] + p[3][i]);
}

// out = M gather(in): the entangling permutation (or sign) followed by the next layer's low block.
template <typename T>
void entangle_low(const T *__restrict__ in, T *__restrict__ out, int n, const GroupSource &src, const T *sign,
                  const T cols[GROUP][GROUP]) {
    const int64_t groups = int64_t(1) << (n - LOW);
    int64_t index[GROUP];
    for (int64_t h = 0; h < groups; ++h) {
        src.fill(h, index);
        T v[GROUP];
        for (int l = 0; l < GROUP; ++l) v[l] = src.kind == CZ ? in[index[l]] * sign[index[l]] : in[index[l]];
        matvec(cols, v, out + h * GROUP);
    }
}

// Inverse entangling layer on psi and lam, the low-block gradient sums added to twice[0..LOW), and
// (UNDO) the low block undone.
template <bool UNDO, typename T>
void unentangle_unlow(const T *__restrict__ psi, const T *__restrict__ lam, T *__restrict__ psi_out,
                      T *__restrict__ lam_out, int n, const GroupSource &src, const T *sign,
                      const T cols_t[GROUP][GROUP], double twice[LOW]) {
    const int64_t groups = int64_t(1) << (n - LOW);
    int64_t index[GROUP];
    T outer[GROUP][GROUP] = {};
    for (int64_t h = 0; h < groups; ++h) {
        src.fill(h, index);
        T x[GROUP], y[GROUP];
        for (int l = 0; l < GROUP; ++l) {
            const T f = src.kind == CZ ? sign[h * GROUP + l] : T(1);
            x[l] = f * psi[index[l]];
            y[l] = f * lam[index[l]];
        }
        for (int i = 0; i < GROUP; ++i)
#pragma omp simd
            for (int j = 0; j < GROUP; ++j) outer[i][j] += y[i] * x[j];
        if (UNDO) {
            matvec(cols_t, x, psi_out + h * GROUP);
            matvec(cols_t, y, lam_out + h * GROUP);
        } else {
            std::memcpy(psi_out + h * GROUP, x, sizeof x);
            std::memcpy(lam_out + h * GROUP, y, sizeof y);
        }
    }
    for (int k = 0; k < LOW; ++k) {
        const int bit = 1 << (LOW - 1 - k);
        for (int i = 0; i < GROUP; ++i)
            if (!(i & bit)) twice[k] += double(outer[i | bit][i]) - double(outer[i][i | bit]);
    }
}

// RY with (cos, sin) of half the angle on qubit q of psi (2^n amplitudes).
template <typename T>
inline void rotate(T *psi, int n, int q, T c, T s) {
    const int64_t stride = int64_t(1) << (n - 1 - q), dim = int64_t(1) << n;
    for (int64_t base = 0; base < dim; base += 2 * stride) {
        T *a = psi + base, *b = a + stride;
#pragma omp simd
        for (int64_t i = 0; i < stride; ++i) {
            const T x = a[i], y = b[i];
            a[i] = c * x - s * y;
            b[i] = s * x + c * y;
        }
    }
}

// RY on qubits q and q + 1 in one pass: half the memory traffic of two.
template <typename T>
inline void rotate_pair(T *psi, int n, int q, T c0, T s0, T c1, T s1) {
    const int64_t inner = int64_t(1) << (n - 2 - q), dim = int64_t(1) << n;
    for (int64_t base = 0; base < dim; base += 4 * inner) {
        T *a = psi + base, *b = a + inner, *c = b + inner, *d = c + inner;  // bits (q, q+1): 00 01 10 11
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) {
            const T x00 = c1 * a[i] - s1 * b[i], x01 = s1 * a[i] + c1 * b[i];
            const T x10 = c1 * c[i] - s1 * d[i], x11 = s1 * c[i] + c1 * d[i];
            a[i] = c0 * x00 - s0 * x10;
            c[i] = s0 * x00 + c0 * x10;
            b[i] = c0 * x01 - s0 * x11;
            d[i] = s0 * x01 + c0 * x11;
        }
    }
}

// Gradient sum of qubit q, and (UNDO) RY on q undone on psi and lam.
template <bool UNDO, typename T>
inline double unrotate(T *psi, T *lam, int n, int q, T c, T s) {
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
                a[i] = c * x + s * y;
                b[i] = c * y - s * x;
                u[i] = c * g + s * h;
                v[i] = c * h - s * g;
            }
        }
        total += acc;
    }
    return total;
}

// Gradient sums of qubits q and q + 1 added to twice[0..2), and (UNDO) both rotations undone, in one pass.
template <bool UNDO, typename T>
inline void unrotate_pair(T *psi, T *lam, int n, int q, T c0, T s0, T c1, T s1, double twice[2]) {
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
                const T p00 = c0 * x00 + s0 * x10, p10 = c0 * x10 - s0 * x00;
                const T p01 = c0 * x01 + s0 * x11, p11 = c0 * x11 - s0 * x01;
                a[i] = c1 * p00 + s1 * p01;
                b[i] = c1 * p01 - s1 * p00;
                c[i] = c1 * p10 + s1 * p11;
                d[i] = c1 * p11 - s1 * p10;
                const T u00 = c0 * y00 + s0 * y10, u10 = c0 * y10 - s0 * y00;
                const T u01 = c0 * y01 + s0 * y11, u11 = c0 * y11 - s0 * y01;
                e[i] = c1 * u00 + s1 * u01;
                f[i] = c1 * u01 - s1 * u00;
                g[i] = c1 * u10 + s1 * u11;
                h[i] = c1 * u11 - s1 * u10;
            }
        }
        twice[0] += acc0;
        twice[1] += acc1;
    }
}

// RY on qubits [0, count) of psi, in pairs.
template <typename T>
inline void rotate_leading(T *psi, int n, int count, const T *th) {
    int q = 0;
    for (; q + 1 < count; q += 2)
        rotate_pair(psi, n, q, std::cos(th[q] / 2), std::sin(th[q] / 2), std::cos(th[q + 1] / 2), std::sin(th[q + 1] / 2));
    if (q < count) rotate(psi, n, q, std::cos(th[q] / 2), std::sin(th[q] / 2));
}

// Gradient sums of qubits [0, count) into twice, and (UNDO) their rotations undone, in pairs.
template <bool UNDO, typename T>
inline void unrotate_leading(T *psi, T *lam, int n, int count, const T *th, double *twice) {
    int q = 0;
    for (; q + 1 < count; q += 2)
        unrotate_pair<UNDO>(psi, lam, n, q, std::cos(th[q] / 2), std::sin(th[q] / 2), std::cos(th[q + 1] / 2),
                            std::sin(th[q + 1] / 2), twice + q);
    if (q < count) twice[q] += unrotate<UNDO>(psi, lam, n, q, std::cos(th[q] / 2), std::sin(th[q] / 2));
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

// The first layer's rotations act on |0...0>, giving the product state of the (cos, sin) columns.
template <typename T>
inline void product_state(T *psi, int n, const T *theta) {
    psi[0] = 1;
    for (int q = 0; q < n; ++q) {
        const T c = std::cos(theta[q] / 2), s = std::sin(theta[q] / 2);
        for (int64_t i = (int64_t(1) << q) - 1; i >= 0; --i) {
            psi[2 * i + 1] = psi[i] * s;
            psi[2 * i] = psi[i] * c;
        }
    }
}

template <typename T>
int forward(const T *theta, int64_t first, int64_t last, int L, int n, int kind, const T *sign, T *states,
            T *probs) {
    const int64_t dim = int64_t(1) << n;
    T *buffer = static_cast<T *>(std::malloc(sizeof(T) * (dim + PAD)));
    if (!buffer) return 1;
    const bool fused = n > LOW;
    const GroupSource src(fused ? n : LOW + 1, kind, false);
    T cols[GROUP][GROUP];
    for (int64_t c = first; c < last; ++c) {
        const T *th = theta + c * L * n;
        T *home = states + c * dim, *psi = home, *spare = buffer + PAD;
        product_state(psi, n, th);
        for (int l = 1; l < L; ++l) {
            const T *tl = th + l * n;
            if (fused) {
                low_block(tl + n - LOW, false, cols);
                entangle_low(psi, spare, n, src, sign, cols);
                std::swap(psi, spare);
                rotate_leading(psi, n, n - LOW, tl);
            } else {
                if (entangle(psi, spare, n, kind, false, sign) != psi) std::swap(psi, spare);
                rotate_leading(psi, n, n, tl);
            }
        }
        if (entangle(psi, spare, n, kind, false, sign) != psi) std::swap(psi, spare);
        if (psi != home) std::memcpy(home, psi, sizeof(T) * dim);
        T *p = probs + c * dim;
#pragma omp simd
        for (int64_t j = 0; j < dim; ++j) p[j] = home[j] * home[j];
    }
    std::free(buffer);
    return 0;
}

template <bool UNDO, typename T>
void backward_layer(T *&psi, T *&lam, T *&psi_spare, T *&lam_spare, int n, int kind, const GroupSource &src,
                    const T *sign, const T *th, T *grad) {
    double twice[64] = {};
    if (n > LOW) {
        T cols_t[GROUP][GROUP];
        low_block(th + n - LOW, true, cols_t);
        unentangle_unlow<UNDO>(psi, lam, psi_spare, lam_spare, n, src, sign, cols_t, twice + n - LOW);
        std::swap(psi, psi_spare);
        std::swap(lam, lam_spare);
        unrotate_leading<UNDO>(psi, lam, n, n - LOW, th, twice);
    } else {
        if (entangle(psi, psi_spare, n, kind, true, sign) != psi) std::swap(psi, psi_spare);
        if (entangle(lam, lam_spare, n, kind, true, sign) != lam) std::swap(lam, lam_spare);
        unrotate_leading<UNDO>(psi, lam, n, n, th, twice);
    }
    for (int q = 0; q < n; ++q) grad[q] = T(0.5 * twice[q]);
}

template <typename T>
int backward(const T *theta, int64_t first, int64_t last, int L, int n, int kind, const T *sign,
             const T *states, const T *grad_probs, T *grad_theta) {
    const int64_t dim = int64_t(1) << n;
    T *work = static_cast<T *>(std::malloc(sizeof(T) * 4 * (dim + PAD)));
    if (!work) return 1;
    const GroupSource src(n > LOW ? n : LOW + 1, kind, true);
    for (int64_t c = first; c < last; ++c) {
        const T *th = theta + c * L * n, *st = states + c * dim, *g = grad_probs + c * dim;
        T *grad = grad_theta + c * L * n;
        T *psi = work, *lam = psi + dim + PAD, *psi_spare = lam + dim + PAD, *lam_spare = psi_spare + dim + PAD;
#pragma omp simd
        for (int64_t j = 0; j < dim; ++j) {
            psi[j] = st[j];
            lam[j] = 2 * g[j] * st[j];
        }
        for (int l = L - 1; l > 0; --l)
            backward_layer<true>(psi, lam, psi_spare, lam_spare, n, kind, src, sign, th + l * n, grad + l * n);
        backward_layer<false>(psi, lam, psi_spare, lam_spare, n, kind, src, sign, th, grad);
    }
    std::free(work);
    return 0;
}

}  // namespace

extern "C" {

int hq_forward_f32(const float *theta, int64_t first, int64_t last, int L, int n, int kind, const float *sign,
                   float *states, float *probs) {
    return forward(theta, first, last, L, n, kind, sign, states, probs);
}

int hq_forward_f64(const double *theta, int64_t first, int64_t last, int L, int n, int kind, const double *sign,
                   double *states, double *probs) {
    return forward(theta, first, last, L, n, kind, sign, states, probs);
}

int hq_backward_f32(const float *theta, int64_t first, int64_t last, int L, int n, int kind, const float *sign,
                    const float *states, const float *grad_probs, float *grad_theta) {
    return backward(theta, first, last, L, n, kind, sign, states, grad_probs, grad_theta);
}

int hq_backward_f64(const double *theta, int64_t first, int64_t last, int L, int n, int kind, const double *sign,
                    const double *states, const double *grad_probs, double *grad_theta) {
    return backward(theta, first, last, L, n, kind, sign, states, grad_probs, grad_theta);
}

}  // extern "C"
