/* int8-weight products in integers (AVX2, with AVX-VNNI where the compiler has it).
 *
 * Weights come in blocks of 32 int8 values with one fp16 scale each, as in llama.cpp's Q8_0.
 * Activations are quantized here, per call, in blocks of 32 too, but to int16 (one float scale
 * each): int8 activations, as Q8_0 pairs them, cost the default model 4x the weights' own error
 * (docs/perf.md, "int8 products in integers"). Each block is an integer dot product (vpdpwssd, or
 * vpmaddwd), scaled and accumulated in float. A large product can split its output rows over
 * the workers of workers.c (q8_matmul_split). Built at
 * first use with -march=native by reference/kernels/q8.py; no torch headers.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "workers.h"

#define STRIPS_AHEAD 2 /* prefetch the strip this many strips ahead: 1-4 measured within 10% */

/* x [m, k] float -> xq [m, k] int16 and xs [m, k/32] float (k a multiple of 32). */
static void quantize_rows(const float *x, int m, int k, int16_t *xq, float *xs) {
  const int nb = k / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int r = 0; r < m; r++)
    for (int b = 0; b < nb; b++) {
      const float *p = x + (long)r * k + b * 32;
      __m256 mx = _mm256_setzero_ps();
      for (int j = 0; j < 32; j += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(p + j)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      xs[r * nb + b] = amax / 32767.0f;
      const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 32767.0f / amax : 0.0f);
      __m256i q[4];
      for (int j = 0; j < 4; j++)
        q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p + 8 * j), inv),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      /* packs interleave 128-bit lanes; the permute restores element order */
      const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
      __m256i lo = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(q[0], q[1]), order);
      __m256i hi = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(q[2], q[3]), order);
      _mm256_storeu_si256((__m256i *)(xq + (long)r * k + b * 32), lo);
      _mm256_storeu_si256((__m256i *)(xq + (long)r * k + b * 32 + 16), hi);
    }
}

/* sum over 32 of x (int16, two registers) times w (int16, two registers), as 8 int32 lanes */
static inline __m256i dot16(__m256i xlo, __m256i xhi, __m256i wlo, __m256i whi) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(_mm256_madd_epi16(xlo, wlo), xhi, whi);
#elif defined(__AVXVNNI__)
  return _mm256_dpwssd_avx_epi32(_mm256_madd_epi16(xlo, wlo), xhi, whi);
#else
  return _mm256_add_epi32(_mm256_madd_epi16(xlo, wlo), _mm256_madd_epi16(xhi, whi));
#endif
}

/* the same with w as 32 int8 in one register, widened here (two input rows widen once: q8_rows) */
static inline __m256i dot32(__m256i xlo, __m256i xhi, __m256i w) {
  return dot16(xlo, xhi, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
               _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)));
}

static inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

static inline __m256i load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Four rows' block scales [4][nb], fp16 in memory, as floats (once per strip, not per input row). */
static void strip_scales(const uint16_t *ws, int nb, float *out) {
  int i = 0;
  for (; i + 8 <= 4 * nb; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ws + i))));
  for (; i < 4 * nb; i++) out[i] = _cvtsh_ss(ws[i]);
}

/* The same 64 bytes of the four rows STRIPS_AHEAD strips on: every other block of the strip. */
static inline void prefetch_ahead(const int8_t *w0, int k, int b) {
  const char *next = (const char *)(w0 + 4L * STRIPS_AHEAD * k + b * 32);
  _mm_prefetch(next, _MM_HINT_T0);
  _mm_prefetch(next + k, _MM_HINT_T0);
  _mm_prefetch(next + 2L * k, _MM_HINT_T0);
  _mm_prefetch(next + 3L * k, _MM_HINT_T0);
}

/* y[r, n] (row stride ldy) = sum_b xs[r, b] * ws[n, b] * dot(xq[r, b], w[n, b]) for n in [n0, n1),
 * ws [n, k/32] fp16. Four weight rows at a time: each strip is read from memory once and from L1
 * for the other input rows, which go two at a time so that each weight block is widened once for
 * both (1.25-1.6x at 2-8 rows). Returns 0, or -1 where scratch memory could not be allocated. */
static int q8_rows(const int16_t *xq, const float *xs, int m, int k, const int8_t *w, const uint16_t *ws,
            int n0, int n1, float *y, long ldy) {
  const int nb = k / 32;
  float *sw = malloc(sizeof(float) * 4 * (size_t)nb);
  if (!sw) return -1;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int8_t *w0 = w + (long)n * k;
    strip_scales(ws + (long)n * nb, nb, sw);
    const int ahead = n + 4 * (STRIPS_AHEAD + 1) <= n1;
    int r = 0;
    for (; r + 2 <= m; r += 2) { /* two input rows at a time: each weight block widened once */
      __m256 a[4], c[4];
      for (int j = 0; j < 4; j++) a[j] = c[j] = _mm256_setzero_ps();
      const int16_t *x0 = xq + (long)r * k, *x1 = x0 + k;
      const float *s0 = xs + r * nb, *s1 = s0 + nb;
      for (int b = 0; b < nb; b++) {
        if (r == 0 && (b & 1) == 0 && ahead) prefetch_ahead(w0, k, b);
        const __m256i x0lo = load(x0 + b * 32), x0hi = load(x0 + b * 32 + 16);
        const __m256i x1lo = load(x1 + b * 32), x1hi = load(x1 + b * 32 + 16);
        for (int j = 0; j < 4; j++) {
          const __m256i wv = load(w0 + j * (long)k + b * 32);
          const __m256i wlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv));
          const __m256i whi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wv, 1));
          const float sj = sw[j * nb + b];
          a[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot16(x0lo, x0hi, wlo, whi)), _mm256_set1_ps(s0[b] * sj), a[j]);
          c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot16(x1lo, x1hi, wlo, whi)), _mm256_set1_ps(s1[b] * sj), c[j]);
        }
      }
      for (int j = 0; j < 4; j++) {
        y[r * ldy + n + j] = hsum(a[j]);
        y[(r + 1) * ldy + n + j] = hsum(c[j]);
      }
    }
    for (; r < m; r++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      const int16_t *xr = xq + (long)r * k;
      const float *sr = xs + r * nb;
      for (int b = 0; b < nb; b++) {
        if (r == 0 && (b & 1) == 0 && ahead) prefetch_ahead(w0, k, b);
        const __m256i xlo = load(xr + b * 32), xhi = load(xr + b * 32 + 16);
        const float s = sr[b];
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + b * 32))), _mm256_set1_ps(s * sw[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + k + b * 32))),
                             _mm256_set1_ps(s * sw[nb + b]), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + 2L * k + b * 32))),
                             _mm256_set1_ps(s * sw[2 * nb + b]), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + 3L * k + b * 32))),
                             _mm256_set1_ps(s * sw[3 * nb + b]), a3);
      }
      float *yr = y + r * ldy;
      yr[n] = hsum(a0);
      yr[n + 1] = hsum(a1);
      yr[n + 2] = hsum(a2);
      yr[n + 3] = hsum(a3);
    }
  }
  for (; n < n1; n++) {
    const int8_t *w0 = w + (long)n * k;
    for (int r = 0; r < m; r++) {
      __m256 a = _mm256_setzero_ps();
      const int16_t *xr = xq + (long)r * k;
      for (int b = 0; b < nb; b++) {
        const __m256i d = dot32(load(xr + b * 32), load(xr + b * 32 + 16), load(w0 + b * 32));
        const float s = xs[r * nb + b] * _cvtsh_ss(ws[(long)n * nb + b]);
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(s), a);
      }
      y[r * ldy + n] = hsum(a);
    }
  }
  free(sw);
  return 0;
}

/* x's rows quantized into fresh scratch, *xq and *xs, which the caller frees; -1 where memory ran out. */
static int quantized(const float *x, int m, int k, int16_t **xq, float **xs) {
  *xq = malloc(sizeof(int16_t) * (size_t)m * k);
  *xs = malloc(sizeof(float) * (size_t)m * (k / 32));
  if (!*xq || !*xs) {
    free(*xq);
    free(*xs);
    return -1;
  }
  quantize_rows(x, m, k, *xq, *xs);
  return 0;
}

/* The whole product on the calling thread, its scratch its own: one foreign call per product.
 * Like q8_rows, returns 0, or -1 where scratch memory could not be allocated. */
int q8_matmul(const float *x, int m, int k, const int8_t *w, const uint16_t *ws, int n, float *y) {
  int16_t *xq;
  float *xs;
  if (quantized(x, m, k, &xq, &xs)) return -1;
  const int failed = q8_rows(xq, xs, m, k, w, ws, 0, n, y, n);
  free(xq);
  free(xs);
  return failed;
}

/* y [m, n] = x [m, k] times the weight, as q8_matmul, the output rows split over `parts` threads
 * (the caller one of them) by workers.c. Returns 0, or -1 where scratch memory could not be
 * allocated. */
struct q8_job {
  const int16_t *xq;
  const float *xs;
  int m, k;
  const int8_t *w;
  const uint16_t *ws;
  float *y;
  long ldy;
};

static int q8_span(const void *ctx, int lo, int hi) {
  const struct q8_job *j = ctx;
  return q8_rows(j->xq, j->xs, j->m, j->k, j->w, j->ws, lo, hi, j->y, j->ldy);
}

int q8_matmul_split(const float *x, int m, int k, const int8_t *w, const uint16_t *ws, int n, float *y,
                    int parts) {
  int16_t *xq;
  float *xs;
  if (quantized(x, m, k, &xq, &xs)) return -1;
  const struct q8_job job = {xq, xs, m, k, w, ws, y, n};
  const int failed = split_rows(q8_span, &job, n, parts);
  free(xq);
  free(xs);
  return failed;
}
