/* SHA-256 (FIPS 180-4) of many short messages at once, eight per AVX2 instruction: one 32-bit
 * lane per message. Used by _fastrecords.c for RFC 9162 leaf and node hashes, where a batch
 * holds a thousand independent messages of a few hundred bytes: on a CPU without SHA
 * instructions OpenSSL hashes one message at a time at ~10-15 cycles per byte, and eight
 * lanes do the same work in about a third of the time (docs/design/spool.md).
 *
 * Each message is prefix || a || b (the RFC 9162 domain byte, then one or two parts), so
 * neither caller has to copy a record to put its prefix in front. Lanes are refilled as they
 * finish, so messages of different lengths keep all eight busy.
 *
 * Only the x86-64 AVX2 build is here; on CPUs with SHA extensions _fastrecords.c uses them
 * (_sha256_ni.h: one stream ran at ~1.1 GB/s on the dev box, about what OpenSSL does with them),
 * elsewhere OpenSSL. Tests
 * compare both with hashlib on every length from 0 to 300 bytes and on random batches
 * (tests/unit/provenance/test_fastrecords.py). */
#ifndef CACHET_SHA256_LANES_H
#define CACHET_SHA256_LANES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *a, *b;
    size_t an, bn;
    unsigned char prefix;
    unsigned char *out; /* 32 bytes */
} lane_message_t;

/* The message's length in bytes and in 64-byte blocks once padded (FIPS 180-4 §5.1.1: a 1 bit,
 * zeros, the 64-bit length). */
static size_t lane_message_length(const lane_message_t *m) { return 1 + m->an + m->bn; }
static size_t lane_message_blocks(const lane_message_t *m) {
    return (lane_message_length(m) + 9 + 63) / 64;
}

static void lane_copy(unsigned char *block, size_t from, size_t to, size_t at,
                      const unsigned char *src, size_t n) {
    size_t lo = at > from ? at : from, hi = at + n < to ? at + n : to;
    if (lo < hi) memcpy(block + (lo - from), src + (lo - at), hi - lo);
}

/* Block k of the padded message. */
static void lane_fill_block(const lane_message_t *m, size_t k, unsigned char block[64]) {
    size_t from = 64 * k, to = from + 64, length = lane_message_length(m);
    memset(block, 0, 64);
    if (k == 0) block[0] = m->prefix;
    lane_copy(block, from, to, 1, m->a, m->an);
    lane_copy(block, from, to, 1 + m->an, m->b, m->bn);
    if (length >= from && length < to) block[length - from] = 0x80;
    if (k + 1 == lane_message_blocks(m)) {
        uint64_t bits = (uint64_t)length * 8;
        for (int i = 0; i < 8; i++) block[63 - i] = (unsigned char)(bits >> (8 * i));
    }
}

static const uint32_t LANE_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};
static const uint32_t LANE_IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
    0x5be0cd19,
};

#if defined(__x86_64__) && defined(__GNUC__)
#define CACHET_HAVE_SHA256_LANES 1
#include <cpuid.h>
#include <immintrin.h>

#define LANE_TARGET __attribute__((target("avx2")))
#define ROTR(x, n) _mm256_or_si256(_mm256_srli_epi32((x), (n)), _mm256_slli_epi32((x), 32 - (n)))
#define XOR3(x, y, z) _mm256_xor_si256(_mm256_xor_si256((x), (y)), (z))

/* Rows (one lane's eight words each) to columns (word w of all eight lanes). */
LANE_TARGET static inline void lane_transpose(__m256i r[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* One block of each lane: state[w] holds word w of the eight lanes' states. */
LANE_TARGET static void lane_compress(__m256i state[8], unsigned char blocks[8][64]) {
    const __m256i swap = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
                                          3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
    __m256i w[16];
    for (int half = 0; half < 2; half++) {
        __m256i *rows = w + 8 * half;
        for (int lane = 0; lane < 8; lane++)
            rows[lane] = _mm256_shuffle_epi8(
                _mm256_loadu_si256((const __m256i *)(blocks[lane] + 32 * half)), swap);
        lane_transpose(rows);
    }
    __m256i a = state[0], b = state[1], c = state[2], d = state[3];
    __m256i e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        __m256i wt;
        if (t < 16) {
            wt = w[t];
        } else {
            __m256i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            __m256i s0 = XOR3(ROTR(w15, 7), ROTR(w15, 18), _mm256_srli_epi32(w15, 3));
            __m256i s1 = XOR3(ROTR(w2, 17), ROTR(w2, 19), _mm256_srli_epi32(w2, 10));
            wt = _mm256_add_epi32(_mm256_add_epi32(w[t & 15], s0),
                                  _mm256_add_epi32(w[(t - 7) & 15], s1));
            w[t & 15] = wt;
        }
        __m256i sigma1 = XOR3(ROTR(e, 6), ROTR(e, 11), ROTR(e, 25));
        __m256i choose = _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g));
        __m256i t1 = _mm256_add_epi32(
            _mm256_add_epi32(_mm256_add_epi32(h, sigma1), choose),
            _mm256_add_epi32(_mm256_set1_epi32((int)LANE_K[t]), wt));
        __m256i sigma0 = XOR3(ROTR(a, 2), ROTR(a, 13), ROTR(a, 22));
        __m256i majority = _mm256_or_si256(_mm256_and_si256(a, b),
                                           _mm256_and_si256(c, _mm256_or_si256(a, b)));
        __m256i t2 = _mm256_add_epi32(sigma0, majority);
        h = g;
        g = f;
        f = e;
        e = _mm256_add_epi32(d, t1);
        d = c;
        c = b;
        b = a;
        a = _mm256_add_epi32(t1, t2);
    }
    state[0] = _mm256_add_epi32(state[0], a);
    state[1] = _mm256_add_epi32(state[1], b);
    state[2] = _mm256_add_epi32(state[2], c);
    state[3] = _mm256_add_epi32(state[3], d);
    state[4] = _mm256_add_epi32(state[4], e);
    state[5] = _mm256_add_epi32(state[5], f);
    state[6] = _mm256_add_epi32(state[6], g);
    state[7] = _mm256_add_epi32(state[7], h);
}

/* Hash every message into its ``out``. */
LANE_TARGET static void sha256_lanes(lane_message_t *messages, size_t count) {
    enum { IDLE = -1 };
    uint32_t words[8][8] __attribute__((aligned(32))); /* words[w][lane] */
    unsigned char blocks[8][64] __attribute__((aligned(32)));
    long current[8];
    size_t block[8] = {0}, blocks_of[8] = {0}, next = 0;
    int busy = 0;
    __m256i state[8];
    for (int lane = 0; lane < 8; lane++) {
        current[lane] = IDLE;
        for (int w = 0; w < 8; w++) words[w][lane] = LANE_IV[w];
        if (next < count) {
            current[lane] = (long)next;
            block[lane] = 0;
            blocks_of[lane] = lane_message_blocks(&messages[next++]);
            busy++;
        } else {
            memset(blocks[lane], 0, 64); /* an idle lane hashes zeros, never read */
        }
    }
    for (int w = 0; w < 8; w++) state[w] = _mm256_load_si256((const __m256i *)words[w]);
    while (busy > 0) {
        for (int lane = 0; lane < 8; lane++)
            if (current[lane] != IDLE)
                lane_fill_block(&messages[current[lane]], block[lane], blocks[lane]);
        lane_compress(state, blocks);
        int finished = 0;
        for (int lane = 0; lane < 8; lane++)
            if (current[lane] != IDLE && block[lane] + 1 == blocks_of[lane]) finished = 1;
        if (!finished) {
            for (int lane = 0; lane < 8; lane++) block[lane]++;
            continue;
        }
        for (int w = 0; w < 8; w++) _mm256_store_si256((__m256i *)words[w], state[w]);
        for (int lane = 0; lane < 8; lane++) {
            if (current[lane] == IDLE) continue;
            if (++block[lane] < blocks_of[lane]) continue;
            unsigned char *out = messages[current[lane]].out;
            for (int w = 0; w < 8; w++) {
                uint32_t v = words[w][lane];
                out[4 * w] = (unsigned char)(v >> 24);
                out[4 * w + 1] = (unsigned char)(v >> 16);
                out[4 * w + 2] = (unsigned char)(v >> 8);
                out[4 * w + 3] = (unsigned char)v;
            }
            for (int w = 0; w < 8; w++) words[w][lane] = LANE_IV[w];
            if (next < count) {
                current[lane] = (long)next;
                block[lane] = 0;
                blocks_of[lane] = lane_message_blocks(&messages[next++]);
            } else {
                current[lane] = IDLE;
                busy--;
            }
        }
        for (int w = 0; w < 8; w++) state[w] = _mm256_load_si256((const __m256i *)words[w]);
    }
}

/* AVX2 present (and enabled by the OS) and no SHA extensions: where eight lanes pay. */
static int sha256_lanes_pay(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__builtin_cpu_supports("avx2")) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return !((ebx >> 29) & 1); /* CPUID.(EAX=7,ECX=0):EBX bit 29: SHA extensions */
}

static int sha256_lanes_available(void) { return __builtin_cpu_supports("avx2") != 0; }

#undef ROTR
#undef XOR3
#undef LANE_TARGET
#else
static int sha256_lanes_pay(void) { return 0; }
static int sha256_lanes_available(void) { return 0; }
static void sha256_lanes(lane_message_t *messages, size_t count) {
    (void)messages;
    (void)count;
}
#endif

#endif
