// Domain kinds: the rule and its parsing. See duet/domain.h.
#include "duet/domain.h"

#include <algorithm>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "duet/error.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

const char* kind_name(DomainKind k) { return k == DomainKind::Drawing ? "drawing" : "image"; }

DomainKind parse_kind(const std::string& name) {
  if (name == "drawing") return DomainKind::Drawing;
  if (name == "image") return DomainKind::Image;
  fail("domain kind '", name, "': drawing (dark strokes on white) or image");
}

std::map<std::string, DomainKind> parse_kind_overrides(const std::string& spec) {
  std::map<std::string, DomainKind> out;
  std::istringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("--domain-kind '", item, "': expected DOMAIN=KIND, e.g. art=image,sketch=drawing");
    out[item.substr(0, eq)] = parse_kind(item.substr(eq + 1));
  }
  return out;
}

bool looks_like_drawing(const cv::Mat& rgb) {
  // Judged at 128 x 128, so the cost does not depend on the file's size.
  cv::Mat small;
  cv::resize(rgb, small, cv::Size(128, 128), 0, 0, cv::INTER_AREA);
  int64_t white = 0, dark = 0;
  for (int y = 0; y < small.rows; ++y) {
    const cv::Vec3b* p = small.ptr<cv::Vec3b>(y);
    for (int x = 0; x < small.cols; ++x) {
      const int r = p[x][0], g = p[x][1], b = p[x][2];
      white += r >= 215 && g >= 215 && b >= 215;
      dark += 299 * r + 587 * g + 114 * b < 128 * 1000;
    }
  }
  const double n = static_cast<double>(small.total());
  return white >= kDrawingWhite * n && dark >= 0.002 * n;
}

std::string KindGuess::describe(const std::string& domain) const {
  std::ostringstream os;
  os << domain << ": " << kind_name(kind) << " (" << drawings << " of " << looked
     << " sampled images look like line drawings)";
  return os.str();
}

KindGuess detect_kind(const Dataset& d, const std::string& domain, int sample) {
  const auto all = d.select(domain);
  if (all.empty()) fail("no ", domain, " images in the dataset");
  KindGuess g;
  const size_t n = std::min<size_t>(all.size(), static_cast<size_t>(std::max(1, sample)));
  std::string first_error;
  for (size_t i = 0; i < n; ++i) {
    const Sample& s = all[i * all.size() / n];
    try {
      g.drawings += looks_like_drawing(load_rgb(d.abs_path(s)));
      ++g.looked;
    } catch (const Error& e) {
      if (first_error.empty()) first_error = e.what();
    }
  }
  if (g.looked == 0)
    fail("none of the sampled ", domain, " images could be read (the first: ", first_error, ")");
  g.kind = 2 * g.drawings >= g.looked ? DomainKind::Drawing : DomainKind::Image;
  return g;
}

std::vector<std::string> Domains::all() const {
  auto v = query;
  v.push_back(gallery);
  return v;
}

namespace {
std::string list(const std::vector<std::string>& v) {
  std::string o;
  for (const auto& s : v) o += (o.empty() ? "" : ", ") + s;
  return o;
}
}  // namespace

Domains resolve_domains(const Dataset& d, const std::vector<std::string>& query,
                        const std::string& gallery) {
  Domains r{query.empty() ? std::vector<std::string>{kDefaultQueryDomain} : query,
            gallery.empty() ? std::string(kDefaultGalleryDomain) : gallery};
  const auto have = d.domains();
  for (const auto& dom : r.all())
    if (std::find(have.begin(), have.end(), dom) == have.end()) {
      const bool named = dom == r.gallery ? !gallery.empty() : !query.empty();
      fail("the dataset has no domain '", dom, "'", named ? "" : " (the default)",
           "; its domains are: ", list(have),
           ". Name them with --query-domain D (repeatable) and --gallery-domain D");
    }
  if (have.size() < 2)
    fail("the dataset has one domain (", list(have), "); cross-domain retrieval needs two or more");
  for (size_t i = 0; i < r.query.size(); ++i) {
    if (r.query[i] == r.gallery)
      fail("domain '", r.gallery, "' is both a query domain and the gallery domain");
    for (size_t j = 0; j < i; ++j)
      if (r.query[j] == r.query[i]) fail("query domain '", r.query[i], "' is named twice");
  }
  return r;
}

std::map<std::string, DomainKind> decide_kinds(const Dataset& d,
                                               const std::vector<std::string>& domains,
                                               const std::map<std::string, DomainKind>& overrides) {
  for (const auto& [dom, kind] : overrides)
    if (std::find(domains.begin(), domains.end(), dom) == domains.end())
      fail("--domain-kind names '", dom, "', which is not a domain of this run (", list(domains),
           ")");
  std::map<std::string, DomainKind> out;
  for (const auto& dom : domains) {
    auto it = overrides.find(dom);
    if (it != overrides.end()) {
      out[dom] = it->second;
      log_line(dom + ": " + kind_name(it->second) + " (given by --domain-kind)");
    } else {
      const KindGuess g = detect_kind(d, dom);
      out[dom] = g.kind;
      log_line(g.describe(dom));
    }
  }
  return out;
}

}  // namespace duet
