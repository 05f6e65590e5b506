/* A C program (no C++ compiler involved) that links the installed liblamina_c through
 * find_package(lamina) and lamina::c, and runs a call that fails cleanly without a model. */
#include <lamina/lamina.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  lamina_model* model = NULL;
  lamina_status status;
  if (strcmp(lamina_version(), LAMINA_VERSION_STRING) != 0) {
    fprintf(stderr, "header %s, library %s\n", LAMINA_VERSION_STRING, lamina_version());
    return 1;
  }
  status = lamina_model_load("/nonexistent/model.gguf", NULL, &model);
  if (status == LAMINA_OK || model != NULL) {
    fprintf(stderr, "loading a missing file succeeded\n");
    return 1;
  }
  printf("lamina::c %s: a missing model gives %s: %s\n", lamina_version(), lamina_status_name(status), lamina_last_error());
  return 0;
}
