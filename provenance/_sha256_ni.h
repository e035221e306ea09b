/* SHA-256 (FIPS 180-4) with the x86 SHA extensions, for _fastrecords.c's leaf and node hashes
 * on CPUs that have them. OpenSSL uses the same instructions there, but each hash through its
 * EVP calls (init, two or three updates, final) costs ~100 ns more: measured here, 520 against
 * 475 ns for a 500-byte record's leaf, 280 against 140 ns per leaf for a batch's tree (65-byte
 * nodes) (docs/design/spool.md). Messages are prefix || a || b (lane_message_t, as the lanes
 * take them), padded once in a buffer of NI_WHOLE_BYTES (longer ones stay with OpenSSL); the
 * compression function follows the instruction set's
 * four-rounds-at-a-time shape (SHA256RNDS2 does two rounds on the state held as ABEF and CDGH;
 * SHA256MSG1/MSG2 and a PALIGNR extend the message schedule).
 *
 * Tests compare every path with hashlib on every length from 0 to 300 bytes, at block
 * boundaries and on random batches (tests/unit/provenance/test_fastrecords.py). */
#ifndef CACHET_SHA256_NI_H
#define CACHET_SHA256_NI_H

#include "_sha256_lanes.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CACHET_HAVE_SHA256_NI 1
#include <cpuid.h>
#include <immintrin.h>

#define NI_TARGET __attribute__((target("sha,sse4.1")))

/* Four rounds: W + K of words i..i+3 in `wk`; state as ABEF (`abef`) and CDGH (`cdgh`). */
#define NI_ROUNDS(abef, cdgh, wk)                                 \
    do {                                                          \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);             \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E)); \
    } while (0)

/* W[i..i+3] from the four groups before: msg1 folds in sigma0 of the one three back, the
 * PALIGNR brings W[i-7..i-4], msg2 adds sigma1 of the last. */
#define NI_SCHEDULE(w0, w1, w2, w3)                               \
    _mm_sha256msg2_epu32(                                         \
        _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

/* `blocks` consecutive 64-byte blocks into the state (A..H), which is held as ABEF and CDGH in
 * between: converted once per call, not once per block. */
NI_TARGET static void sha256_ni_blocks(uint32_t state[8], const unsigned char *data,
                                       size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abcd = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i efgh = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
    __m128i fehg = _mm_shuffle_epi32(efgh, 0x1B);
    __m128i abef = _mm_alignr_epi8(badc, fehg, 8);
    __m128i cdgh = _mm_blend_epi16(fehg, badc, 0xF0);
    for (size_t k = 0; k < blocks; k++, data += 64) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i w[4];
        for (int i = 0; i < 4; i++)
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), swap);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i >= 4)
                w[i & 3] = NI_SCHEDULE(w[i & 3], w[(i + 1) & 3], w[(i + 2) & 3], w[(i + 3) & 3]);
            __m128i wk = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&LANE_K[4 * i]));
            NI_ROUNDS(abef, cdgh, wk);
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* Two independent messages' blocks at once: SHA256RNDS2 has a latency of several cycles and
 * issues more often than that, so one chain of rounds leaves the unit idle between steps and a
 * second chain fills those gaps (measured: docs/design/spool.md). Both have `blocks` blocks. */
NI_TARGET static void sha256_ni_blocks2(uint32_t state1[8], const unsigned char *data1,
                                        uint32_t state2[8], const unsigned char *data2,
                                        size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef[2], cdgh[2];
    uint32_t *states[2] = {state1, state2};
    for (int s = 0; s < 2; s++) {
        __m128i abcd = _mm_loadu_si128((const __m128i *)&states[s][0]);
        __m128i efgh = _mm_loadu_si128((const __m128i *)&states[s][4]);
        __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
        __m128i fehg = _mm_shuffle_epi32(efgh, 0x1B);
        abef[s] = _mm_alignr_epi8(badc, fehg, 8);
        cdgh[s] = _mm_blend_epi16(fehg, badc, 0xF0);
    }
    for (size_t k = 0; k < blocks; k++, data1 += 64, data2 += 64) {
        const __m128i abef1_in = abef[0], cdgh1_in = cdgh[0];
        const __m128i abef2_in = abef[1], cdgh2_in = cdgh[1];
        __m128i w1[4], w2[4];
        for (int i = 0; i < 4; i++) {
            w1[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data1 + 16 * i)), swap);
            w2[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data2 + 16 * i)), swap);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i >= 4) {
                w1[i & 3] =
                    NI_SCHEDULE(w1[i & 3], w1[(i + 1) & 3], w1[(i + 2) & 3], w1[(i + 3) & 3]);
                w2[i & 3] =
                    NI_SCHEDULE(w2[i & 3], w2[(i + 1) & 3], w2[(i + 2) & 3], w2[(i + 3) & 3]);
            }
            const __m128i k4 = _mm_loadu_si128((const __m128i *)&LANE_K[4 * i]);
            __m128i wk1 = _mm_add_epi32(w1[i & 3], k4), wk2 = _mm_add_epi32(w2[i & 3], k4);
            cdgh[0] = _mm_sha256rnds2_epu32(cdgh[0], abef[0], wk1);
            cdgh[1] = _mm_sha256rnds2_epu32(cdgh[1], abef[1], wk2);
            abef[0] = _mm_sha256rnds2_epu32(abef[0], cdgh[0], _mm_shuffle_epi32(wk1, 0x0E));
            abef[1] = _mm_sha256rnds2_epu32(abef[1], cdgh[1], _mm_shuffle_epi32(wk2, 0x0E));
        }
        abef[0] = _mm_add_epi32(abef[0], abef1_in);
        cdgh[0] = _mm_add_epi32(cdgh[0], cdgh1_in);
        abef[1] = _mm_add_epi32(abef[1], abef2_in);
        cdgh[1] = _mm_add_epi32(cdgh[1], cdgh2_in);
    }
    for (int s = 0; s < 2; s++) {
        __m128i feba = _mm_shuffle_epi32(abef[s], 0x1B);
        __m128i dchg = _mm_shuffle_epi32(cdgh[s], 0xB1);
        _mm_storeu_si128((__m128i *)&states[s][0], _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128((__m128i *)&states[s][4], _mm_alignr_epi8(dchg, feba, 8));
    }
}

enum { NI_WHOLE_BYTES = 2048 }; /* messages padded in one buffer up to this size */

/* Whether the message, padded, fits the one buffer sha256_ni_message pads it in. */
static int sha256_ni_fits(const lane_message_t *m) {
    return 64 * lane_message_blocks(m) <= NI_WHOLE_BYTES;
}

/* The message padded into `padded` (three copies); returns its block count. */
static size_t sha256_ni_pad(const lane_message_t *m, unsigned char padded[NI_WHOLE_BYTES]) {
    size_t blocks = lane_message_blocks(m), length = lane_message_length(m);
    padded[0] = m->prefix;
    if (m->an) memcpy(padded + 1, m->a, m->an);
    if (m->bn) memcpy(padded + 1 + m->an, m->b, m->bn);
    padded[length] = 0x80;
    memset(padded + length + 1, 0, 64 * blocks - length - 1);
    uint64_t bits = (uint64_t)length * 8;
    for (int i = 0; i < 8; i++) padded[64 * blocks - 1 - i] = (unsigned char)(bits >> (8 * i));
    return blocks;
}

static void sha256_ni_store(const uint32_t state[8], unsigned char *out) {
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(state[i] >> 24);
        out[4 * i + 1] = (unsigned char)(state[i] >> 16);
        out[4 * i + 2] = (unsigned char)(state[i] >> 8);
        out[4 * i + 3] = (unsigned char)state[i];
    }
}

/* The digest of a message that fits into m->out: padded once, then its blocks in one call. */
static void sha256_ni_message(const lane_message_t *m) {
    uint32_t state[8];
    unsigned char padded[NI_WHOLE_BYTES];
    memcpy(state, LANE_IV, sizeof state);
    sha256_ni_blocks(state, padded, sha256_ni_pad(m, padded));
    sha256_ni_store(state, m->out);
}

/* Two messages that fit, hashed side by side for the blocks they both have; the longer one's
 * remaining blocks alone. */
static void sha256_ni_pair(const lane_message_t *m1, const lane_message_t *m2) {
    uint32_t state1[8], state2[8];
    unsigned char padded1[NI_WHOLE_BYTES], padded2[NI_WHOLE_BYTES];
    memcpy(state1, LANE_IV, sizeof state1);
    memcpy(state2, LANE_IV, sizeof state2);
    size_t blocks1 = sha256_ni_pad(m1, padded1), blocks2 = sha256_ni_pad(m2, padded2);
    size_t both = blocks1 < blocks2 ? blocks1 : blocks2;
    sha256_ni_blocks2(state1, padded1, state2, padded2, both);
    if (blocks1 > both) sha256_ni_blocks(state1, padded1 + 64 * both, blocks1 - both);
    if (blocks2 > both) sha256_ni_blocks(state2, padded2 + 64 * both, blocks2 - both);
    sha256_ni_store(state1, m1->out);
    sha256_ni_store(state2, m2->out);
}

/* SHA extensions, SSSE3 and SSE4.1 (CPUID.(EAX=7,ECX=0):EBX bit 29; CPUID.1:ECX bits 9, 19). */
static int sha256_ni_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 9) & 1) || !((ecx >> 19) & 1))
        return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 29) & 1;
}

#undef NI_ROUNDS
#undef NI_SCHEDULE
#undef NI_TARGET
#else
static int sha256_ni_available(void) { return 0; }
static int sha256_ni_fits(const lane_message_t *m) { (void)m; return 0; }
static void sha256_ni_message(const lane_message_t *m) { (void)m; }
static void sha256_ni_pair(const lane_message_t *m1, const lane_message_t *m2) {
    (void)m1;
    (void)m2;
}
#endif

#endif
