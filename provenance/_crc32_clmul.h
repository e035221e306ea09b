/* CRC-32 (zlib's: reflected polynomial 0x04C11DB7, pre- and post-inverted) by folding with
   carry-less multiplication (PCLMULQDQ), for spool frames (proxy/records/_spoolmap.c writes them,
   provenance/_fastrecords.c checks them). zlib 1.2.13's table code runs at about 2.5 bytes per
   ns here: a 430-byte record's frame cost 170 ns, most of what the serving process then spent
   recording a hit. Folding 64 bytes per step runs an order of magnitude faster.

   Method: the buffer, as a polynomial, is folded 512 bits at a time (four 128-bit lanes), then
   into one lane, then reduced to 64 and 32 bits and finished with a Barrett reduction. The
   constants are x^n mod P(x) for the fold distances, bit-reflected: derived and checked by
   tests/unit/provenance/test_crc32_clmul.py's reference, not copied. Buffers shorter than
   64 bytes, the last len % 16 bytes, and CPUs without PCLMULQDQ or SSE4.1 use zlib's crc32,
   except up to 16 bytes (a frame's length field, what folding leaves), which a byte table does:
   zlib's call cost ~40 ns for those 4 bytes, as much as folding the payload. */

#ifndef CACHET_CRC32_CLMUL_H
#define CACHET_CRC32_CLMUL_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define CRC32_REFLECTED_POLYNOMIAL 0xedb88320u

static uint32_t crc32_byte_table[256]; /* filled on first use: entry 0 of 255 is never 0 */

/* zlib's crc32(crc, p, n) a byte at a time (short inputs: the length field of a frame). */
static inline uint32_t crc32_bytes(uint32_t crc, const unsigned char *p, size_t n) {
    if (crc32_byte_table[255] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ CRC32_REFLECTED_POLYNOMIAL : c >> 1;
            crc32_byte_table[i] = c;
        }
    }
    crc = ~crc;
    while (n--) crc = crc32_byte_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* x^(4*128+32), x^(4*128-32), x^(128+32), x^(128-32), x^64 mod P(x): each shifted left by 32,
   reflected over 64 bits, shifted left by 1. mu = floor(x^64 / P(x)) and P(x), reflected over
   33 bits, for the Barrett reduction. */
#define CRC32_FOLD_4_LOW 0x154442bd4ULL
#define CRC32_FOLD_4_HIGH 0x1c6e41596ULL
#define CRC32_FOLD_1_LOW 0x1751997d0ULL
#define CRC32_FOLD_1_HIGH 0x0ccaa009eULL
#define CRC32_FOLD_64 0x163cd6124ULL
#define CRC32_P_REFLECTED 0x1db710641ULL
#define CRC32_MU_REFLECTED 0x1f7011641ULL

__attribute__((target("pclmul,sse4.1"))) static inline __m128i
crc32_fold_lane(__m128i lane, __m128i constants, __m128i next) {
    __m128i low = _mm_clmulepi64_si128(lane, constants, 0x00);
    __m128i high = _mm_clmulepi64_si128(lane, constants, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), next);
}

/* The inverted register after `n` bytes (n >= 64, a multiple of 16) from inverted register
   `state`. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc32_fold_blocks(uint32_t state, const unsigned char *p, size_t n) {
    const __m128i *in = (const __m128i *)p;
    __m128i a = _mm_xor_si128(_mm_loadu_si128(in), _mm_cvtsi32_si128((int)state));
    __m128i b = _mm_loadu_si128(in + 1), c = _mm_loadu_si128(in + 2),
            d = _mm_loadu_si128(in + 3);
    in += 4;
    n -= 64;
    const __m128i fold4 = _mm_set_epi64x((long long)CRC32_FOLD_4_HIGH, (long long)CRC32_FOLD_4_LOW);
    for (; n >= 64; n -= 64, in += 4) {
        a = crc32_fold_lane(a, fold4, _mm_loadu_si128(in));
        b = crc32_fold_lane(b, fold4, _mm_loadu_si128(in + 1));
        c = crc32_fold_lane(c, fold4, _mm_loadu_si128(in + 2));
        d = crc32_fold_lane(d, fold4, _mm_loadu_si128(in + 3));
    }
    const __m128i fold1 = _mm_set_epi64x((long long)CRC32_FOLD_1_HIGH, (long long)CRC32_FOLD_1_LOW);
    __m128i x = crc32_fold_lane(a, fold1, b);
    x = crc32_fold_lane(x, fold1, c);
    x = crc32_fold_lane(x, fold1, d);
    for (; n >= 16; n -= 16, in++) x = crc32_fold_lane(x, fold1, _mm_loadu_si128(in));
    /* 128 -> 96 bits: the low half times x^(128-32), added to the high half. */
    x = _mm_xor_si128(_mm_srli_si128(x, 8), _mm_clmulepi64_si128(x, fold1, 0x10));
    /* 96 -> 64 bits: the low 32 bits times x^64, added to the rest. */
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    const __m128i fold64 = _mm_set_epi64x(0, (long long)CRC32_FOLD_64);
    x = _mm_xor_si128(_mm_srli_si128(x, 4),
                      _mm_clmulepi64_si128(_mm_and_si128(x, low32), fold64, 0x00));
    /* Barrett: q = floor(x * mu), remainder = x - q * P, all reflected. */
    const __m128i barrett = _mm_set_epi64x((long long)CRC32_MU_REFLECTED,
                                           (long long)CRC32_P_REFLECTED);
    __m128i q = _mm_clmulepi64_si128(_mm_and_si128(x, low32), barrett, 0x10);
    __m128i qp = _mm_clmulepi64_si128(_mm_and_si128(q, low32), barrett, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x, qp), 1);
}

static int crc32_clmul_usable = -1; /* -1: not asked yet; tests may switch it off */

static inline int crc32_clmul_available(void) {
    if (crc32_clmul_usable < 0) {
        __builtin_cpu_init();
        crc32_clmul_usable = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    return crc32_clmul_usable;
}

/* zlib's crc32(crc, p, n), the same value. */
static inline uint32_t crc32_frame(uint32_t crc, const unsigned char *p, size_t n) {
    if (n >= 64 && crc32_clmul_available()) {
        size_t blocks = n & ~(size_t)15;
        crc = ~crc32_fold_blocks(~crc, p, blocks);
        p += blocks;
        n -= blocks; /* under 16 bytes left */
    }
    if (n <= 16) return crc32_bytes(crc, p, n);
    return (uint32_t)crc32(crc, p, (uInt)n);
}

#else

static int crc32_clmul_usable = 0;

static inline uint32_t crc32_frame(uint32_t crc, const unsigned char *p, size_t n) {
    if (n <= 16) return crc32_bytes(crc, p, n);
    return (uint32_t)crc32(crc, p, (uInt)n);
}

#endif

#endif
