// Test helper: a throwaway PKI made with the openssl CLI, for the tests of TLS and mutual TLS.
#ifndef QSR_TESTS_INTEGRATION_TEST_PKI_H_
#define QSR_TESTS_INTEGRATION_TEST_PKI_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr::testing {

// A throwaway PKI in a temporary directory: a CA, a server certificate for 127.0.0.1 and
// localhost, a client certificate the CA signed, and a "rogue" client certificate signed by a
// second, untrusted CA.
class Pki {
 public:
  Pki() {
    ok_ = MakeCa("ca") && MakeCa("rogue-ca") &&
          MakeLeaf("server", "ca",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n") &&
          MakeLeaf("client", "ca", "extendedKeyUsage=clientAuth\n") &&
          MakeLeaf("rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n");
  }
  bool ok() const { return ok_; }
  std::string Pem(const std::string& name) const { return dir_.path() + "/" + name + ".pem"; }
  std::string Key(const std::string& name) const { return dir_.path() + "/" + name + ".key"; }
  const std::string& dir() const { return dir_.path(); }

 private:
  bool Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    CommandResult r = RunCommand(args, 60);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ":\n" << r.output;
    return r.exit_code == 0;
  }
  bool MakeCa(const std::string& name) {
    return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", Key(name), "-out", Pem(name), "-days", "2", "-subj",
                    "/CN=qsr-test-" + name, "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  }
  bool MakeLeaf(const std::string& name, const std::string& ca, const std::string& ext) {
    const std::string csr = dir_.path() + "/" + name + ".csr";
    const std::string ext_file = dir_.path() + "/" + name + ".ext";
    WriteFile(ext_file, "basicConstraints=CA:FALSE\n" + ext);
    return Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", Key(name), "-out", csr, "-subj", "/CN=qsr-test-" + name}) &&
           Openssl({"x509", "-req", "-in", csr, "-CA", Pem(ca), "-CAkey", Key(ca), "-set_serial",
                    absl::StrCat(++serial_), "-days", "2", "-extfile", ext_file, "-out",
                    Pem(name)});
  }

  TempDir dir_;
  int serial_ = 0;
  bool ok_ = false;
};

}  // namespace qsr::testing

#endif  // QSR_TESTS_INTEGRATION_TEST_PKI_H_
