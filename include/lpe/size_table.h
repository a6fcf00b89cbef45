/* size_table.h: one allocation per lifetime class, carved from a table of (pointer, bytes)
 * slots. Both backends size and carve their buffers with it: the CPU with 64-byte alignment,
 * the CUDA backend with cudaMalloc's 256 (on host-side pointers to device memory).
 *
 *   lpe_slot t[64]; int n = 0;
 *   LPE_SLOT(t, n, c->tok, Bm * k);            (count elements of *c->tok)
 *   size_t bytes = lpe_carve(t, n, NULL, 64);   (total, each slot rounded up)
 *   lpe_carve(t, n, base, 64);                  (point every slot into base; empty -> NULL)
 */
#ifndef LPE_SIZE_TABLE_H
#define LPE_SIZE_TABLE_H

#include <stddef.h>

typedef struct {
    void **ptr;
    size_t bytes;
} lpe_slot;

#define LPE_SLOT(t, n, p, count) ((t)[(n)++] = (lpe_slot){(void **)&(p), (size_t)(count) * sizeof *(p)})

static inline size_t lpe_carve(lpe_slot *t, int n, char *base, size_t align) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (base) *t[i].ptr = t[i].bytes ? base + off : NULL;
        off += (t[i].bytes + align - 1) / align * align;
    }
    return off;
}

#endif
