#include "net/certs.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <memory>

namespace raftnginx::net {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Bignum = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using Time = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_STRING_free>>;

Status openssl_failure(const std::string& what) {
  const unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0)
    ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return Status::io_error(what + ": " + buf);
}

Result<Key> new_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key)
    return openssl_failure("generating a key");
  return key;
}

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr)
    return openssl_failure("certificate extension " + value);
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return added == 1 ? Status() : openssl_failure("adding extension " + value);
}

bool is_ip(const std::string& host) {
  unsigned char out[16];
  return inet_pton(AF_INET, host.c_str(), out) == 1 || inet_pton(AF_INET6, host.c_str(), out) == 1;
}

// A certificate for `subject` and `key`, valid over [not_before, not_after], not yet signed.
Result<Cert> new_certificate(const std::string& subject, EVP_PKEY* key,
                             std::chrono::system_clock::time_point not_before,
                             std::chrono::system_clock::time_point not_after) {
  Cert cert(X509_new());
  Bignum serial(BN_new());
  if (!cert || !serial || X509_set_version(cert.get(), 2) != 1 ||
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr)
    return openssl_failure("a new certificate");
  Time from(ASN1_TIME_set(nullptr, std::chrono::system_clock::to_time_t(not_before)));
  Time until(ASN1_TIME_set(nullptr, std::chrono::system_clock::to_time_t(not_after)));
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!from || !until || X509_set1_notBefore(cert.get(), from.get()) != 1 ||
      X509_set1_notAfter(cert.get(), until.get()) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(subject.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1)
    return openssl_failure("certificate for " + subject);
  return cert;
}

Result<Pem> to_pem(X509* cert, EVP_PKEY* key) {
  Bio cert_bio(BIO_new(BIO_s_mem()));
  Bio key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return openssl_failure("writing PEM");
  auto text = [](BIO* bio) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<size_t>(n));
  };
  return Pem{text(cert_bio.get()), text(key_bio.get())};
}

}  // namespace

Result<Pem> make_ca(const std::string& common_name, std::chrono::system_clock::duration valid_for) {
  auto key = new_key();
  if (!key.ok())
    return key.status();
  const auto now = std::chrono::system_clock::now();
  auto cert =
      new_certificate(common_name, key->get(), now - std::chrono::minutes(5), now + valid_for);
  if (!cert.ok())
    return cert.status();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1)
    return openssl_failure("CA issuer");
  for (const auto& [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"}}) {
    if (Status s = add_extension(c, c, nid, value); !s.ok())
      return s;
  }
  if (X509_sign(c, key->get(), EVP_sha256()) == 0)
    return openssl_failure("signing the CA");
  return to_pem(c, key->get());
}

Result<Pem> make_certificate(const Pem& ca, const CertificateRequest& request) {
  Bio ca_cert_bio(BIO_new_mem_buf(ca.certificate.data(), static_cast<int>(ca.certificate.size())));
  Bio ca_key_bio(BIO_new_mem_buf(ca.key.data(), static_cast<int>(ca.key.size())));
  Cert ca_cert(PEM_read_bio_X509(ca_cert_bio.get(), nullptr, nullptr, nullptr));
  Key ca_key(PEM_read_bio_PrivateKey(ca_key_bio.get(), nullptr, nullptr, nullptr));
  if (!ca_cert || !ca_key)
    return openssl_failure("reading the CA");
  auto key = new_key();
  if (!key.ok())
    return key.status();
  auto cert =
      new_certificate(request.common_name, key->get(), request.not_before, request.not_after);
  if (!cert.ok())
    return cert.status();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert.get())) != 1)
    return openssl_failure("issuer");
  std::string names = "DNS:" + request.common_name;
  for (const std::string& host : request.hosts)
    names += (is_ip(host) ? ",IP:" : ",DNS:") + host;
  for (const auto& [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, request.server ? "serverAuth,clientAuth" : "clientAuth"},
        {NID_subject_alt_name, names},
        {NID_authority_key_identifier, "keyid"}}) {
    if (Status s = add_extension(c, ca_cert.get(), nid, value); !s.ok())
      return s;
  }
  if (X509_sign(c, ca_key.get(), EVP_sha256()) == 0)
    return openssl_failure("signing the certificate for " + request.common_name);
  return to_pem(c, key->get());
}

}  // namespace raftnginx::net
