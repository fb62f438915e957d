{
  "targets": [
    {
      "target_name": "coffer_native",
      "sources": ["coffer_native.c"],
      "defines": ["NAPI_VERSION=8", "_FILE_OFFSET_BITS=64"],
      "cflags_c": ["-std=gnu11", "-fvisibility=hidden"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS=='linux'", { "libraries": ["-ldl", "-lpthread"] }]],
      "xcode_settings": {
        "GCC_C_LANGUAGE_STANDARD": "gnu11",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "MACOSX_DEPLOYMENT_TARGET": "10.13",
        "OTHER_CFLAGS": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
      }
    }
  ]
}
