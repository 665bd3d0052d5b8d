"""The deployment files are valid: docker-compose.yml (with and without the sandbox
profile) and the nginx front-door configuration."""
import os
import shutil
import subprocess
import unittest

import harness


class DeployFilesTest(unittest.TestCase):
    def run_ok(self, *cmd):
        r = subprocess.run(cmd, cwd=harness.ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        return r.stdout

    @unittest.skipUnless(shutil.which("docker-compose"), "docker-compose not installed")
    def test_compose_config_valid(self):
        self.run_ok("docker-compose", "-f", "docker-compose.yml", "config", "-q")
        out = self.run_ok("docker-compose", "-f", "docker-compose.yml", "--profile", "sandbox",
                          "config", "--services")
        services = set(out.split())
        self.assertTrue(set(harness.SERVICES) | {"postgres", "nginx", "sandbox"} <= services,
                        services)

    @unittest.skipUnless(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"),
                         "nginx not installed")
    def test_nginx_config_valid(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.run_ok(nginx, "-t", "-q", "-c", os.path.join(harness.ROOT, "deploy/nginx/nginx.conf"))


if __name__ == "__main__":
    unittest.main()
