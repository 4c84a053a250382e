#![allow(dead_code)]
pub mod bridge;
pub mod capture;
pub mod corpus;
pub mod cyrus;
pub mod demo_mail;
pub mod dovecot;
pub mod faulty_proxy;
pub mod fidelity;
pub mod hostile;
pub mod oauth;
pub mod process;
pub mod servers;
pub mod tools;
pub mod walkthrough;
