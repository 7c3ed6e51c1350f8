#include "serve/search_request.h"

namespace duet {

int64_t parse_int(const std::string& s, int64_t lo, int64_t hi, const std::string& what,
                  int status) {
  // Digits only (no sign, space or exponent), and few enough that they cannot overflow.
  const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) throw HttpError(400, what + ": '" + s.substr(0, 40) + "' is not a whole number");
  const size_t first = std::min(s.find_first_not_of('0'), s.size());
  const bool huge = s.size() - first > 18;  // more than 18 digits: beyond any bound of ours
  const long long v = huge ? 0 : std::stoll(s);
  if (huge || v < lo || v > hi)
    throw HttpError(status, what + ": " + s.substr(0, 40) + " is out of range (" +
                                std::to_string(lo) + " to " + std::to_string(hi) + ")");
  return v;
}

namespace {
// A parameter from the query string or, for multipart bodies, a form field of that name.
std::string param(const httplib::Request& req, const char* name) {
  if (req.has_param(name)) return req.get_param_value(name);
  if (req.has_file(name)) return req.get_file_value(name).content;
  return "";
}
}  // namespace

SearchRequest parse_search_request(const httplib::Request& req, int64_t max_k, int64_t rows) {
  SearchRequest r;
  const std::string k = param(req, "k");
  if (!k.empty()) r.k = parse_int(k, 1, max_k, "k");
  const std::string like = param(req, "like");
  if (!like.empty()) {
    if (rows < 1) throw HttpError(404, "like: the index is empty");
    r.like = parse_int(like, 0, rows - 1, "like", 404);
    return r;
  }
  if (req.method != "POST")
    throw HttpError(405, "GET /api/search needs ?like=ID; POST an image to search with it");
  const std::string type = req.get_header_value("Content-Type");
  if (req.is_multipart_form_data()) {
    if (!req.has_file("query")) throw HttpError(400, "multipart body without a 'query' file");
    r.image = req.get_file_value("query").content;
  } else if (type.rfind("image/", 0) == 0 || type.rfind("application/octet-stream", 0) == 0) {
    r.image = req.body;
  } else {
    throw HttpError(415,
                    "Content-Type '" + type.substr(0, 80) +
                        "': send an image (image/png, image/jpeg, application/octet-stream) or "
                        "multipart/form-data with a 'query' file");
  }
  if (r.image.empty()) throw HttpError(400, "empty query: send an image");
  r.domain = param(req, "domain");
  return r;
}

}  // namespace duet
