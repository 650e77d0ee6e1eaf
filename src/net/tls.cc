#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "util/printable.h"

namespace raftnginx::net {
namespace {

namespace ssl = boost::asio::ssl;

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0)
    return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1)
    return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string asn1_string(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::load(TlsFiles files, PeerCertificate peers) {
  std::shared_ptr<TlsContext> tls(new TlsContext(std::move(files), peers));
  if (Status s = tls->reload(); !s.ok())
    return s;
  return tls;
}

Result<std::shared_ptr<ssl::context>> TlsContext::build(
    std::chrono::system_clock::time_point* not_after) const {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  // AES-128-GCM first, chosen by the server: as safe for this use, and cheaper per record than
  // OpenSSL's default AES-256-GCM on every request a gateway relays.
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Resumed sessions (nginx reuses its sessions to the leader) need a session id context when
  // client certificates are verified: without one, OpenSSL fails each resumption with an
  // "internal error" alert, and nginx answers that request 502.
  static constexpr unsigned char kSessionContext[] = "raft-nginx";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_ciphersuites(
      native, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
  boost::system::error_code ec;
  const bool presents = !files_.cert.empty() || !files_.key.empty();
  if (presents) {
    ctx->use_certificate_chain_file(files_.cert, ec);
    if (ec)
      return Status::invalid_argument("TLS certificate " + files_.cert + ": " + ec.message());
    ctx->use_private_key_file(files_.key, ssl::context::pem, ec);
    if (ec)
      return Status::invalid_argument("TLS key " + files_.key + ": " + ec.message());
    if (SSL_CTX_check_private_key(native) != 1)
      return Status::invalid_argument("TLS key " + files_.key + " does not match certificate " +
                                      files_.cert);
  }
  if (peers_ != PeerCertificate::kNotAsked) {
    ctx->load_verify_file(files_.ca, ec);
    if (ec)
      return Status::invalid_argument("TLS CA " + files_.ca + ": " + ec.message());
    ctx->set_verify_mode(peers_ == PeerCertificate::kRequired
                             ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert
                             : ssl::verify_peer);
  }
  if (!presents) {
    *not_after = std::chrono::system_clock::time_point::max();
    return ctx;
  }
  X509* cert = SSL_CTX_get0_certificate(native);
  if (cert == nullptr)
    return Status::invalid_argument("TLS certificate " + files_.cert + ": " + openssl_error());
  *not_after = to_time_point(X509_get0_notAfter(cert));
  return ctx;
}

Status TlsContext::reload() {
  std::chrono::system_clock::time_point not_after;
  auto ctx = build(&not_after);
  if (!ctx.ok())
    return ctx.status();
  std::lock_guard lock(mu_);
  context_ = std::move(ctx).value();
  not_after_ = not_after;
  return Status();
}

std::shared_ptr<ssl::context> TlsContext::current() const {
  std::lock_guard lock(mu_);
  return context_;
}

std::chrono::system_clock::time_point TlsContext::not_after() const {
  std::lock_guard lock(mu_);
  return not_after_;
}

PeerIdentity peer_identity(SSL* ssl) {
  PeerIdentity id;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr)
    return id;
  X509_NAME* subject = X509_get_subject_name(cert);
  const int cn = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn >= 0)
    id.common_name = asn1_string(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn)));
  auto* alt =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; alt != nullptr && i < sk_GENERAL_NAME_num(alt); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt, i);
    if (name->type == GEN_DNS)
      id.dns_names.push_back(asn1_string(name->d.dNSName));
  }
  GENERAL_NAMES_free(alt);
  X509_free(cert);
  return id;
}

bool PeerIdentity::names_cluster(std::string_view cluster_name) const {
  return std::find(dns_names.begin(), dns_names.end(), cluster_name) != dns_names.end();
}

std::string PeerIdentity::describe() const {
  std::string out = "CN=" + printable(common_name, 64);
  for (const std::string& name : dns_names)
    out += ", DNS=" + printable(name, 64);
  return common_name.empty() && dns_names.empty() ? "no names" : out;
}

}  // namespace raftnginx::net
