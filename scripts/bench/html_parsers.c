// HTML5 parsers side by side: gumbo (Keel's today) and MyHTML (Debian's libmodest-dev, by lexbor's author), parsing the
// same pages, the parser alone (no extraction). Files on stdin, NUL-separated; seconds per pass, averaged over 3 passes.
#include <gumbo.h>
#include <myhtml/api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    static char *docs[4096]; static size_t sizes[4096]; int n = 0; size_t total = 0;
    char path[4096]; int c, len = 0;
    while ((c = getchar()) != EOF) {
        if (c == 0) { path[len] = 0; FILE *f = fopen(path, "rb"); if (f) { fseek(f, 0, SEEK_END); long s = ftell(f); rewind(f);
            docs[n] = malloc(s + 1); fread(docs[n], 1, s, f); docs[n][s] = 0; sizes[n] = s; total += s; n++; fclose(f); } len = 0; }
        else path[len++] = c;
    }
    int rounds = 3;
    double t0 = now();
    for (int r = 0; r < rounds; r++) for (int i = 0; i < n; i++) { GumboOutput *o = gumbo_parse_with_options(&kGumboDefaultOptions, docs[i], sizes[i]); gumbo_destroy_output(&kGumboDefaultOptions, o); }
    double gumbo = (now() - t0) / rounds;
    myhtml_t *myhtml = myhtml_create(); myhtml_init(myhtml, MyHTML_OPTIONS_PARSE_MODE_SINGLE, 1, 0);
    myhtml_tree_t *tree = myhtml_tree_create(); myhtml_tree_init(tree, myhtml);
    t0 = now();
    for (int r = 0; r < rounds; r++) for (int i = 0; i < n; i++) { myhtml_parse(tree, MyENCODING_UTF_8, docs[i], sizes[i]); }
    double my = (now() - t0) / rounds;
    printf("%d pages, %.1f MB: gumbo %.3f s (%.1f MB/s), MyHTML %.3f s (%.1f MB/s): %.1fx\n", n, total / 1e6, gumbo, total / 1e6 / gumbo, my, total / 1e6 / my, gumbo / my);
    return 0;
}
