/* registry.c: name -> estimator. Adding a method: one file in src/estimators/ defining
 * `const lpe_estimator lpe_est_NAME`, one extern line and one table entry here. */
#include <string.h>

#include "lpe/estimator.h"

extern const lpe_estimator lpe_est_naive;
extern const lpe_estimator lpe_est_const;
extern const lpe_estimator lpe_est_itgis;
extern const lpe_estimator lpe_est_mhis;
extern const lpe_estimator lpe_est_qld;
extern const lpe_estimator lpe_est_gld;
extern const lpe_estimator lpe_est_ams;
extern const lpe_estimator lpe_est_smc;
extern const lpe_estimator lpe_est_ceis;

static const lpe_estimator *const table[] = {
    &lpe_est_naive,
    &lpe_est_const,
    &lpe_est_itgis,
    &lpe_est_mhis,
    &lpe_est_qld,
    &lpe_est_gld,
    &lpe_est_ams,
    &lpe_est_smc,
    &lpe_est_ceis,
};
#define N_EST (int)(sizeof table / sizeof table[0])

const lpe_estimator *lpe_estimator_find(const char *name) {
    for (int i = 0; i < N_EST; i++)
        if (strcmp(table[i]->name, name) == 0) return table[i];
    return NULL;
}

int lpe_estimator_count(void) { return N_EST; }

const lpe_estimator *lpe_estimator_at(int i) { return i >= 0 && i < N_EST ? table[i] : NULL; }
