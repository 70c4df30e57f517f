//! Problem messages never quote what a file holds: a config may include a
//! file that is no config at all (a key, a password file), and problems go
//! to the journal and to collectors.

use super::{Fixture, problems_with};
use crate::evidence::server_config::{apache, nginx};

/// Every token below carries this marker; no message may.
const MARK: &str = "S3CR3T";

fn assert_nothing_quoted(config: &crate::evidence::server_config::ServerConfig, expect: usize) {
    assert!(
        config.problems.len() >= expect,
        "each bad line is a problem: {:#?}",
        config.problems
    );
    for p in &config.problems {
        assert!(
            !p.message.contains(MARK),
            "{}:{:?} quotes the file: {}",
            p.file.display(),
            p.line,
            p.message
        );
    }
}

#[test]
fn nginx_problems_name_the_line_not_the_content() {
    let fx = Fixture::new("no-echo-nginx");
    // What an included non-config file, or a hostile one, looks like.
    fx.write(
        "secret.conf",
        "ssl_protocols TLSv1.2 S3CR3T_A;\n\
         listen S3CR3T_B;\n\
         ssl S3CR3T_C;\n\
         ssl_verify_client S3CR3T_D;\n\
         error_log /var/log/x.log S3CR3T_E;\n\
         server { listen 443 ssl; ssl_protocols S3CR3T_F; listen [S3CR3T_G]:443; listen S3CR3T_H.example:443; }\n\
         \"quoted\"S3CR3T_I;\n\
         S3CR3T_J }\n\
         S3CR3T_K {\n\
         root:$6$S3CR3T_L$hash:19000:0:99999:7:::\n",
    );
    let main = fx.write("nginx.conf", "http {\ninclude secret.conf;\n}\n");
    let config = nginx::parse(&main).unwrap();
    assert_nothing_quoted(&config, 10);
    // Still useful: each names the directive when it is one nginx has.
    assert!(!problems_with(&config, "\"ssl_protocols\"").is_empty());
    assert!(!problems_with(&config, "a directive is not terminated").is_empty());
}

#[test]
fn apache_problems_name_the_line_not_the_content() {
    let fx = Fixture::new("no-echo-apache");
    fx.write(
        "secret.conf",
        "SSLEngine S3CR3T_A\n\
         Listen S3CR3T_B:443\n\
         Listen 10.0.0.1:S3CR3T_C\n\
         <VirtualHost [S3CR3T_D]:443>\nServerName x\n</VirtualHost>\n\
         SSLProtocol S3CR3T_E\n\
         ServerName ${S3CR3T_F}\n\
         S3CR3T_G \"unterminated\n\
         <S3CR3T_H>\n\
         </S3CR3T_I>\n\
         <VirtualHost *:443>\n</S3CR3T_J>\n</VirtualHost>\n\
         SSLCertificateFile\n",
    );
    let main = fx.write("apache2.conf", "Include secret.conf\n");
    let config = apache::parse(&main).unwrap();
    assert_nothing_quoted(&config, 9);
    assert!(!problems_with(&config, "SSLEngine").is_empty());
}
