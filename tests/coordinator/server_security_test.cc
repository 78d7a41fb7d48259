#include "coordinator/server_security.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_security.h"

namespace qsr {
namespace {

class ServerSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/qsr-sec-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string Write(const std::string& name, const std::string& contents) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }
  std::string dir_;
};

TEST_F(ServerSecurityTest, CredentialErrorsNameTheFlagAndFile) {
  EXPECT_TRUE(MakeServerCredentials({}).ok());

  const std::string missing = dir_ + "/missing.pem";
  const std::string junk = Write("junk.pem", "not a certificate");
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server =
      MakeServerCredentials(Server(missing, junk));
  EXPECT_FALSE(server.ok());
  EXPECT_TRUE(absl::StrContains(server.status().message(), "--tls-cert " + missing))
      << server.status();
  const std::string cert =
      Write("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  server = MakeServerCredentials(Server(cert, junk));
  EXPECT_FALSE(server.ok());
  EXPECT_TRUE(absl::StrContains(server.status().message(), "--tls-key " + junk)) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "PRIVATE KEY")) << server.status();
  server = MakeServerCredentials(Server(cert, ""));
  EXPECT_TRUE(absl::IsInvalidArgument(server.status())) << server.status();
  server = MakeServerCredentials(Server("", "", cert));
  EXPECT_TRUE(absl::IsInvalidArgument(server.status())) << server.status();
}

}  // namespace
}  // namespace qsr
