// render_page: tools/pepita/dashboard/index.html with style.css and app.js put inline (embedded
// at build time by dashboard/embed.cmake), and for a report the run's snapshot as JSON data.
#include <string>
#include <string_view>

#include "dashboard_model.hpp"

namespace pepita::cli::dashboard {
namespace assets {
extern const std::string_view index_html;
extern const std::string_view style_css;
extern const std::string_view app_js;
}  // namespace assets

namespace {

void replace(std::string& text, std::string_view marker, std::string_view with) {
  const auto at = text.find(marker);
  if (at != std::string::npos) text.replace(at, marker.size(), with);
}

}  // namespace

std::string render_page(const nlohmann::json* data) {
  std::string page(assets::index_html);
  replace(page, "/*PEPITA_STYLE*/", assets::style_css);
  replace(page, "/*PEPITA_SCRIPT*/", assets::app_js);
  std::string inline_data;
  if (data != nullptr) {
    // '<' only occurs inside JSON strings, where \u003c means the same: no "</script>" or
    // "<!--" from a task's name or stderr can end the data block.
    const std::string json = data->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    inline_data.reserve(json.size() + 128);
    inline_data.append("<script id=\"pepita-data\" type=\"application/json\">");
    for (char c : json) {
      if (c == '<')
        inline_data.append("\\u003c");
      else
        inline_data.push_back(c);
    }
    inline_data.append("</script>");
  }
  replace(page, "<!--PEPITA_DATA-->", inline_data);  // last: the data may hold any text
  return page;
}

}  // namespace pepita::cli::dashboard
