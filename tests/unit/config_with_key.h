// What the config unit tests parse: the two required keys plus the JSON member under test.
// Thread-safety: pure function.
#pragma once

#include <string>

#include "config/config.h"

namespace config::testing {

inline LoadResult WithKey(const std::string& member) {
  return Parse(
      "{\"fcgi_connection_address\": \"/run/php/php8.2-fpm.sock\",\n"
      " \"fcgi_script_filename_save\": \"/srv/save.php\", " +
          member + "}",
      "test.json");
}

}  // namespace config::testing
