// serve/search_request.h — what a call of /api/search asks for, read from cpp-httplib's request.
//
// Kept apart from the handler so that the parsing of untrusted query strings and multipart bodies
// is one function: the server calls it, and fuzz/fuzz_search_request.cpp feeds it arbitrary
// requests.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <string>

#include "duet/error.h"

namespace duet {

// A refusal with its HTTP status; the server's exception handler turns it into {"error": ...}.
struct HttpError : Error {
  int status;
  HttpError(int s, const std::string& what) : Error(what), status(s) {}
};

// A whole number in [lo, hi]; `what` names it in the refusal (400 when not a number, `status`
// when out of range).
int64_t parse_int(const std::string& s, int64_t lo, int64_t hi, const std::string& what,
                  int status = 400);

struct SearchRequest {
  int64_t k = 10;
  int64_t like = -1;   // >= 0: search with this indexed row (GET ?like=ID), no image
  std::string domain;  // the query image's domain ("": the model's first query domain)
  std::string image;   // the query image's bytes (POST)
};

// Reads k (1..max_k), like (0..rows-1, else 404) and domain from the query string or multipart
// fields, and the image from the body (image/* or application/octet-stream) or the multipart
// file `query`. Throws HttpError (400, 404, 405, 415) for anything else.
SearchRequest parse_search_request(const httplib::Request& req, int64_t max_k, int64_t rows);

}  // namespace duet
