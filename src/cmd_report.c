/* cmd_report.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_report(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe report: not implemented yet\n");
    return 1;
}
