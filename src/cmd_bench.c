/* cmd_bench.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe bench: not implemented yet\n");
    return 1;
}
