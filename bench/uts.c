/*
 * The UTS tree: a small SHA-1 and the node rules of the reference
 * implementation (see uts.h).  Compiled into every UTS program, so that
 * all versions hash with the same code.
 */
#include <stdio.h>
#include <string.h>

#include "uts.h"

static inline uint32_t
rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static inline uint32_t
load_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static inline void
store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/*
 * One 64-byte block of SHA-1 into h.  The message schedule is kept in a
 * 16-word ring and the rounds are unrolled five at a time, so that the
 * working variables rotate by renaming instead of by moves: a quarter of
 * the time of the straightforward loop here, and hashing is nearly all the
 * work of a UTS node.
 */
#define SHA1_W(i)                                                              \
    (w[(i)&15] = rol(w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^                  \
                         w[((i) + 2) & 15] ^ w[(i)&15],                        \
                     1))
#define SHA1_R(a, b, c, d, e, f, k, x)                                         \
    do {                                                                       \
        e += rol(a, 5) + (f) + (k) + (x);                                      \
        b = rol(b, 30);                                                        \
    } while (0)
#define SHA1_F1(b, c, d) (d ^ (b & (c ^ d)))
#define SHA1_F2(b, c, d) (b ^ c ^ d)
#define SHA1_F3(b, c, d) ((b & c) | (d & (b | c)))
#define SHA1_FIVE(F, k, i, X)                                                  \
    do {                                                                       \
        SHA1_R(a, b, c, d, e, F(b, c, d), k, X(i));                            \
        SHA1_R(e, a, b, c, d, F(a, b, c), k, X((i) + 1));                      \
        SHA1_R(d, e, a, b, c, F(e, a, b), k, X((i) + 2));                      \
        SHA1_R(c, d, e, a, b, F(d, e, a), k, X((i) + 3));                      \
        SHA1_R(b, c, d, e, a, F(c, d, e), k, X((i) + 4));                      \
    } while (0)
#define SHA1_W0(i) w[i]

static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[16], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

    for (int i = 0; i < 16; i++)
        w[i] = load_be32(p + 4 * i);
    SHA1_FIVE(SHA1_F1, 0x5a827999u, 0, SHA1_W0);
    SHA1_FIVE(SHA1_F1, 0x5a827999u, 5, SHA1_W0);
    SHA1_FIVE(SHA1_F1, 0x5a827999u, 10, SHA1_W0);
    SHA1_R(a, b, c, d, e, SHA1_F1(b, c, d), 0x5a827999u, w[15]);
    SHA1_R(e, a, b, c, d, SHA1_F1(a, b, c), 0x5a827999u, SHA1_W(16));
    SHA1_R(d, e, a, b, c, SHA1_F1(e, a, b), 0x5a827999u, SHA1_W(17));
    SHA1_R(c, d, e, a, b, SHA1_F1(d, e, a), 0x5a827999u, SHA1_W(18));
    SHA1_R(b, c, d, e, a, SHA1_F1(c, d, e), 0x5a827999u, SHA1_W(19));
    SHA1_FIVE(SHA1_F2, 0x6ed9eba1u, 20, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0x6ed9eba1u, 25, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0x6ed9eba1u, 30, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0x6ed9eba1u, 35, SHA1_W);
    SHA1_FIVE(SHA1_F3, 0x8f1bbcdcu, 40, SHA1_W);
    SHA1_FIVE(SHA1_F3, 0x8f1bbcdcu, 45, SHA1_W);
    SHA1_FIVE(SHA1_F3, 0x8f1bbcdcu, 50, SHA1_W);
    SHA1_FIVE(SHA1_F3, 0x8f1bbcdcu, 55, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0xca62c1d6u, 60, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0xca62c1d6u, 65, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0xca62c1d6u, 70, SHA1_W);
    SHA1_FIVE(SHA1_F2, 0xca62c1d6u, 75, SHA1_W);

    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void
uts_sha1(const unsigned char *msg, size_t len, unsigned char out[UTS_DIGEST])
{
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u,
                     0xc3d2e1f0u};
    unsigned char last[128];
    size_t rest, tail;
    uint64_t bits = (uint64_t)len * 8;

    for (; len >= 64; msg += 64, len -= 64)
        sha1_block(h, msg);

    /* Padding: 0x80, zeros, and the length in bits, big-endian, ending a
     * block; one block if the rest leaves room for it, else two. */
    rest = len;
    tail = rest < 56 ? 64 : 128;
    memset(last, 0, tail);
    if (rest > 0)
        memcpy(last, msg, rest);
    last[rest] = 0x80;
    store_be32(last + tail - 8, (uint32_t)(bits >> 32));
    store_be32(last + tail - 4, (uint32_t)bits);
    sha1_block(h, last);
    if (tail == 128)
        sha1_block(h, last + 64);

    for (int i = 0; i < 5; i++)
        store_be32(out + 4 * i, h[i]);
}

int
uts_sha1_selftest(void)
{
    static const struct {
        const char *msg;
        const char *digest;
    } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
         "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "a49b2446a02c645bf419f995b67091253a04a259"},
    };
    unsigned char d[UTS_DIGEST];
    char hex[2 * UTS_DIGEST + 1];

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uts_sha1((const unsigned char *)v[i].msg, strlen(v[i].msg), d);
        for (int j = 0; j < UTS_DIGEST; j++)
            snprintf(hex + 2 * j, 3, "%02x", d[j]);
        if (strcmp(hex, v[i].digest) != 0) {
            fprintf(stderr, "uts: SHA-1 of \"%s\" is %s, not %s\n", v[i].msg,
                    hex, v[i].digest);
            return 1;
        }
    }
    return 0;
}

void
uts_root(unsigned char node[UTS_DIGEST])
{
    unsigned char seed[20] = {0};

    store_be32(seed + 16, UTS_SEED);
    uts_sha1(seed, sizeof seed, node);
}

void
uts_child(const unsigned char parent[UTS_DIGEST], int i,
          unsigned char child[UTS_DIGEST])
{
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u,
                     0xc3d2e1f0u};
    unsigned char block[64] = {0};

    /* The 24-byte message and its padding fill one block: the parent,
     * i big-endian, 0x80, zeros, and the length, 192 bits. */
    memcpy(block, parent, UTS_DIGEST);
    store_be32(block + UTS_DIGEST, (uint32_t)i);
    block[UTS_DIGEST + 4] = 0x80;
    block[63] = (UTS_DIGEST + 4) * 8;
    sha1_block(h, block);
    for (int j = 0; j < 5; j++)
        store_be32(child + 4 * j, h[j]);
}

int
uts_children(const unsigned char node[UTS_DIGEST], int depth)
{
    uint32_t r;

    if (depth == 0)
        return UTS_B0;
    /* rng_rand: the last 4 bytes, big-endian, top bit cleared; rng_toProb
     * divides by 2^31. */
    r = load_be32(node + UTS_DIGEST - 4) & 0x7fffffffu;
    return (double)r / 2147483648.0 < UTS_Q ? UTS_M : 0;
}

int
uts_check(const struct uts_count *c)
{
    if (c->nodes == UTS_T3_NODES && c->leaves == UTS_T3_LEAVES &&
        c->depth == UTS_T3_DEPTH)
        return 0;
    fprintf(stderr,
            "uts: T3 has %llu nodes, %llu leaves, depth %d; "
            "counted %llu, %llu, %d\n",
            (unsigned long long)UTS_T3_NODES, (unsigned long long)UTS_T3_LEAVES,
            UTS_T3_DEPTH, (unsigned long long)c->nodes,
            (unsigned long long)c->leaves, c->depth);
    return 1;
}
