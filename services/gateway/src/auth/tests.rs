use super::*;

#[test]
fn tokens_verify_expire_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::open(dir.path(), vec![]).unwrap();
    let (token, claims) = auth
        .issue(
            "screen-1",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(60),
            "api",
        )
        .unwrap();
    assert_eq!(auth.verify(&token).unwrap(), claims);
    assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
    // Another key (another centre) does not accept it.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        Auth::open(other.path(), vec![]).unwrap().verify(&token),
        Err(AuthError::Invalid)
    );
    // Expired.
    let (old, _) = auth
        .issue("x", Role::Admin, None, None, Duration::ZERO, "session")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(auth.verify(&old), Err(AuthError::Invalid));
    // Revoked, without a restart.
    revoke(dir.path(), &claims.jti).unwrap();
    assert_eq!(auth.verify(&token), Err(AuthError::Invalid));
    // The key survives a reopen.
    let (t2, _) = auth
        .issue("y", Role::Admin, None, None, Duration::from_secs(60), "api")
        .unwrap();
    assert!(Auth::open(dir.path(), vec![]).unwrap().verify(&t2).is_ok());
}

#[test]
fn passwords_are_hashed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut users = Users::load(dir.path()).unwrap();
    assert!(users.is_empty());
    let hash = hash_password("correct horse").unwrap();
    assert!(hash.starts_with("$argon2id$"));
    users
        .put(User {
            username: "ana".into(),
            role: Role::DutyOfficer,
            scope: None,
            agency: None,
            password_hash: hash,
        })
        .unwrap();
    let users = Users::load(dir.path()).unwrap();
    assert!(users.check("ana", "correct horse").is_some());
    assert!(users.check("ana", "wrong").is_none());
    assert!(users.check("nobody", "correct horse").is_none());
    let text = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
    assert!(!text.contains("correct horse"));
}

#[test]
fn the_bearer_scheme_is_matched_in_any_case() {
    for ok in [
        "Bearer t",
        "bearer t",
        "BEARER t",
        "bEaReR   t",
        "Bearer t ",
    ] {
        assert_eq!(bearer_token(ok), Some("t"), "{ok:?}");
    }
    for bad in ["Bearer", "Bearer ", "Basic t", "Bearert", "Token t", ""] {
        assert_eq!(bearer_token(bad), None, "{bad:?}");
    }
}

#[test]
fn a_changed_user_record_ends_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let ana = |role, password: &str| User {
        username: "ana".into(),
        role,
        scope: None,
        agency: None,
        password_hash: hash_password(password).unwrap(),
    };
    let auth = Auth::open(dir.path(), vec![]).unwrap();
    // Added after the gateway opened its users: logs in at once.
    let mut users = Users::load(dir.path()).unwrap();
    users.put(ana(Role::Admin, "first password")).unwrap();
    let (old, claims) = auth.login("ana", "first password").unwrap().unwrap();
    assert_eq!((claims.role, claims.r#gen), (Role::Admin, Some(0)));
    assert!(auth.verify(&old).is_ok());
    // Demoted, new password: the old session and the old password are refused.
    users.put(ana(Role::WallScreen, "second password")).unwrap();
    assert_eq!(auth.check(&old), Err(Refusal::Revoked));
    assert!(auth.login("ana", "first password").unwrap().is_none());
    let (new, claims) = auth.login("ana", "second password").unwrap().unwrap();
    assert_eq!((claims.role, claims.r#gen), (Role::WallScreen, Some(1)));
    assert!(auth.verify(&new).is_ok());
    // A session minted for the same name with another role is refused too.
    let (forged_role, _) = auth
        .issue(
            "ana",
            Role::Admin,
            None,
            None,
            Duration::from_secs(60),
            "session",
        )
        .unwrap();
    assert!(auth.verify(&forged_role).is_err());
    // An unreadable users file accepts no session (the roles are unknown) until fixed.
    std::fs::write(dir.path().join("users.json"), b"{not json").unwrap();
    assert_eq!(auth.check(&new), Err(Refusal::Revoked));
}

#[test]
fn views_follow_roles() {
    assert_eq!(
        board_view(Role::WallScreen, Some(View::Duty)),
        View::WallScreen
    );
    assert_eq!(board_view(Role::FieldOfficer, None), View::WallScreen);
    assert_eq!(board_view(Role::DutyOfficer, None), View::Duty);
    assert_eq!(
        board_view(Role::Admin, Some(View::WallScreen)),
        View::WallScreen
    );
}

/// Eight operators add a user and revoke a token at the same moment, each from what it
/// loaded before the others saved: every user and every revocation is kept.
#[test]
fn concurrent_operator_commands_keep_each_others_changes() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password("correct horse battery").unwrap();
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (data_dir, hash, start) = (dir.path().to_owned(), hash.clone(), start.clone());
            std::thread::spawn(move || {
                let mut users = Users::load(&data_dir).unwrap();
                start.wait();
                users
                    .put(User {
                        username: format!("officer-{i}"),
                        role: Role::DutyOfficer,
                        scope: None,
                        agency: None,
                        password_hash: hash,
                    })
                    .unwrap();
                revoke(&data_dir, &format!("token-{i}")).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let users = Users::load(dir.path()).unwrap();
    for i in 0..8 {
        assert!(
            users
                .users
                .iter()
                .any(|u| u.username == format!("officer-{i}")),
            "officer-{i} lost: {:?}",
            users.users.iter().map(|u| &u.username).collect::<Vec<_>>()
        );
    }
    let revoked = std::fs::read_to_string(dir.path().join("revoked-tokens")).unwrap();
    for i in 0..8 {
        assert!(
            revoked.lines().any(|l| l == format!("token-{i}")),
            "{revoked}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_revocation_list_that_cannot_be_read_is_not_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    revoke(dir.path(), "first").unwrap();
    let path = dir.path().join("revoked-tokens");
    // A directory in its place cannot be read as text whoever runs the test (root too).
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = revoke(dir.path(), "second").unwrap_err().to_string();
    assert!(err.contains("nothing was revoked"), "{err}");
    assert!(path.is_dir(), "the unreadable list was replaced");
}
