// Fuzz target: a raft port's TLS server end, as a stranger's bytes reach it before any
// certificate is checked: the node's own TLS context (its certificate, the cluster's CA, peer
// certificates required) answers the input over memory BIOs; whatever is decrypted goes into the
// frame reader. Nothing may crash, hang or leak.
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "net/certs.h"
#include "net/tls.h"
#include "transport/frame.h"

namespace {

using namespace raftnginx;

// A node's context, made once: a CA and a node certificate written to a private directory.
SSL_CTX* node_context() {
  static std::shared_ptr<net::TlsContext> tls = [] {
    const std::string dir =
        std::filesystem::temp_directory_path() / ("raftnginx-fuzz-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const net::Pem ca = std::move(net::make_ca("fuzz-ca")).value();
    net::CertificateRequest req;
    req.common_name = "n1";
    const net::Pem node = std::move(net::make_certificate(ca, req)).value();
    std::ofstream(dir + "/ca.pem") << ca.certificate;
    std::ofstream(dir + "/n1.pem") << node.certificate;
    std::ofstream(dir + "/n1-key.pem") << node.key;
    auto loaded = net::TlsContext::load({dir + "/n1.pem", dir + "/n1-key.pem", dir + "/ca.pem"},
                                        net::TlsContext::PeerCertificate::kRequired);
    std::filesystem::remove_all(dir);
    return std::move(loaded).value();
  }();
  return tls->current()->native_handle();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  SSL* ssl = SSL_new(node_context());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);  // owned by ssl from here
  SSL_set_accept_state(ssl);
  BIO_write(in, data, static_cast<int>(size));
  (void)SSL_do_handshake(ssl);
  transport::FrameReader reader(1 << 20);
  std::vector<transport::Frame> frames;
  char buf[4096];
  for (int n; (n = SSL_read(ssl, buf, sizeof buf)) > 0;) {
    if (!reader.feed(std::string_view(buf, static_cast<size_t>(n)), &frames).ok())
      break;
  }
  SSL_free(ssl);
  return 0;
}
