/* softswitch native backend: the port loop (placeholder until the C ports exist) */
static void ports_free(sw_t *sw) { (void)sw; }
