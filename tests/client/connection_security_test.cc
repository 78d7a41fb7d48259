#include "client/connection_security.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

ClientSecurity Client(std::string ca, std::string cert = "", std::string key = "") {
  ClientSecurity s;
  s.tls_ca = std::move(ca);
  s.tls_cert = std::move(cert);
  s.tls_key = std::move(key);
  return s;
}

class ConnectionSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/qsr-sec-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    ::unsetenv(kTokenEnvVar);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    ::unsetenv(kTokenEnvVar);
  }
  std::string Write(const std::string& name, const std::string& contents) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }
  std::string dir_;
};

TEST_F(ConnectionSecurityTest, TokenFromFileDropsTheNewline) {
  absl::StatusOr<std::string> t = LoadToken(Write("t", "abc123\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "abc123");
}

TEST_F(ConnectionSecurityTest, TokenFromTheEnvironmentWhenNoFile) {
  absl::StatusOr<std::string> none = LoadToken("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  ::setenv(kTokenEnvVar, "from-env", 1);
  absl::StatusOr<std::string> t = LoadToken("");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "from-env");
  // The file wins over the environment.
  t = LoadToken(Write("t", "from-file"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "from-file");
}

TEST_F(ConnectionSecurityTest, BadTokenFilesAreNamedButNotEchoed) {
  const std::string missing = dir_ + "/missing";
  absl::StatusOr<std::string> t = LoadToken(missing);
  EXPECT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), missing)) << t.status();
  t = LoadToken(Write("empty", " \n"));
  EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "empty")) << t.status();
  t = LoadToken(Write("spaces", "two words"));
  EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
  EXPECT_FALSE(absl::StrContains(t.status().message(), "two words")) << t.status();
  t = LoadToken(Write("long", std::string(kMaxTokenBytes + 1, 'x')));
  EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
}

TEST_F(ConnectionSecurityTest, CredentialErrorsNameTheFlagAndFile) {
  EXPECT_TRUE(MakeChannelCredentials({}).ok());

  const std::string missing = dir_ + "/missing.pem";
  const std::string cert =
      Write("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> client =
      MakeChannelCredentials(Client(missing));
  EXPECT_FALSE(client.ok());
  EXPECT_TRUE(absl::StrContains(client.status().message(), "--tls-ca " + missing))
      << client.status();
  client = MakeChannelCredentials(Client(cert, cert));
  EXPECT_TRUE(absl::IsInvalidArgument(client.status())) << client.status();
}

TEST_F(ConnectionSecurityTest, PemFilesAreCheckedForTheirKind) {
  const std::string junk = Write("junk.pem", "not a certificate");
  absl::StatusOr<std::string> pem = ReadPemFile("tls-key", junk, "PRIVATE KEY");
  EXPECT_FALSE(pem.ok());
  EXPECT_TRUE(absl::StrContains(pem.status().message(), "--tls-key " + junk)) << pem.status();
  EXPECT_TRUE(absl::StrContains(pem.status().message(), "PRIVATE KEY")) << pem.status();
  const std::string key =
      Write("key.pem", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
  pem = ReadPemFile("tls-key", key, "PRIVATE KEY");
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_TRUE(absl::StrContains(*pem, "AAAA"));
  EXPECT_FALSE(ReadPemFile("tls-cert", key, "CERTIFICATE").ok());
}

TEST(LoopbackTest, RecognizesLoopbackListenAddresses) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackListen("127.1.2.3:0"));
  EXPECT_TRUE(IsLoopbackListen("localhost:7070"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:7070"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackListen("[::]:7070"));
  EXPECT_FALSE(IsLoopbackListen("10.1.2.3:7070"));
  EXPECT_FALSE(IsLoopbackListen("coordinator.example.com:7070"));
  EXPECT_FALSE(IsLoopbackListen(":7070"));
}

}  // namespace
}  // namespace qsr
